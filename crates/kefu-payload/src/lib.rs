//! The message model and the wire formats of WeChat's Dialogue Open Platform customer service.
#![forbid(unsafe_code)]
