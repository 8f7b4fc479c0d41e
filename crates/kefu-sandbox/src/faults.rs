//! Fault injection: a seeded RNG decides, request by request, whether the platform answers, fails
//! with `-1`, or drops the connection.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// A fault the sandbox injected into one `/openapi` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The request was read, then the connection was closed without an answer: the client
    /// cannot know whether the platform acted (an ambiguous failure).
    Drop,
    /// The platform answered `{"success":false,"code":-1,"msg":"系统异常,请稍候再试"}`.
    SystemError,
}

impl Fault {
    /// A short name for logs: `drop` or `system_error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Fault::Drop => "drop",
            Fault::SystemError => "system_error",
        }
    }
}

/// The fault settings and the seeded RNG that applies them.
///
/// Every request draws exactly two numbers, one for the drop decision and one for the system
/// error, whatever the rates are. So the same seed and the same sequence of requests give the same
/// faults, and changing one rate does not shift the other's sequence.
#[derive(Debug)]
pub(crate) struct Faults {
    latency: Duration,
    system_error_rate: f64,
    drop_rate: f64,
    rng: Mutex<StdRng>,
}

impl Faults {
    /// Faults with these settings, seeded with `seed`. Rates must already be validated.
    pub(crate) fn new(
        latency: Duration,
        system_error_rate: f64,
        drop_rate: f64,
        seed: u64,
    ) -> Faults {
        Faults {
            latency,
            system_error_rate,
            drop_rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// The delay before answering an `/openapi` request.
    pub(crate) fn latency(&self) -> Duration {
        self.latency
    }

    /// Decides the fate of the next request. A drop wins over a system error.
    pub(crate) fn roll(&self) -> Option<Fault> {
        let (drop_roll, error_roll) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            (rng.random::<f64>(), rng.random::<f64>())
        };
        if drop_roll < self.drop_rate {
            Some(Fault::Drop)
        } else if error_roll < self.system_error_rate {
            Some(Fault::SystemError)
        } else {
            None
        }
    }
}

/// Checks a rate: a fraction of requests from 0.0 to 1.0. The message says what was wrong, for
/// both the command line and [`SandboxConfig`](crate::SandboxConfig).
pub(crate) fn check_rate(value: f64) -> Result<f64, String> {
    if value.is_nan() {
        return Err("NaN is not a rate; give a fraction of requests from 0.0 to 1.0".to_owned());
    }
    if !(0.0..=1.0).contains(&value) {
        return Err(format!(
            "{value} is outside 0.0..=1.0; give a fraction of requests, such as 0.05 for 5%"
        ));
    }
    Ok(value)
}

/// The clap value parser of `--system-error-rate` and `--drop-rate`.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a number; give a fraction of requests from 0.0 to 1.0, such as 0.05"
        )
    })?;
    check_rate(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(faults: &Faults, n: usize) -> Vec<Option<Fault>> {
        (0..n).map(|_| faults.roll()).collect()
    }

    #[test]
    fn rates_zero_and_one_are_absolute() {
        let none = Faults::new(Duration::ZERO, 0.0, 0.0, 1);
        assert!(sequence(&none, 1000).iter().all(Option::is_none));
        let errors = Faults::new(Duration::ZERO, 1.0, 0.0, 1);
        assert!(
            sequence(&errors, 1000)
                .iter()
                .all(|f| *f == Some(Fault::SystemError))
        );
        let drops = Faults::new(Duration::ZERO, 1.0, 1.0, 1);
        assert!(
            sequence(&drops, 1000)
                .iter()
                .all(|f| *f == Some(Fault::Drop))
        );
    }

    #[test]
    fn same_seed_same_sequence_and_other_seed_differs() {
        let a = sequence(&Faults::new(Duration::ZERO, 0.3, 0.3, 42), 200);
        let b = sequence(&Faults::new(Duration::ZERO, 0.3, 0.3, 42), 200);
        let c = sequence(&Faults::new(Duration::ZERO, 0.3, 0.3, 43), 200);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.contains(&Some(Fault::Drop)));
        assert!(a.contains(&Some(Fault::SystemError)));
        assert!(a.contains(&None));
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let faults = Faults::new(Duration::ZERO, 0.0, 0.25, 7);
        let drops = sequence(&faults, 10_000)
            .iter()
            .filter(|f| f.is_some())
            .count();
        assert!((2_200..2_800).contains(&drops), "{drops}");
    }

    #[test]
    fn the_drop_sequence_does_not_depend_on_the_error_rate() {
        let drops = |error_rate| {
            sequence(&Faults::new(Duration::ZERO, error_rate, 0.2, 9), 300)
                .into_iter()
                .map(|f| f == Some(Fault::Drop))
                .collect::<Vec<_>>()
        };
        assert_eq!(drops(0.0), drops(0.7));
    }

    #[test]
    fn rate_parsing_is_precise() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1.0"), Ok(1.0));
        assert_eq!(parse_rate(" 0.05 "), Ok(0.05));
        let err = parse_rate("1.5").unwrap_err();
        assert!(err.contains("1.5 is outside 0.0..=1.0"), "{err}");
        let err = parse_rate("-0.1").unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err = parse_rate("five").unwrap_err();
        assert!(err.contains("\"five\" is not a number"), "{err}");
        assert!(parse_rate("NaN").unwrap_err().contains("NaN"));
        assert!(parse_rate("inf").unwrap_err().contains("outside"));
    }
}
