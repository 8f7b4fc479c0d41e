//! The refusals of `api.weixin.qq.com` the sandbox plays: each its global return code (全局返回码)
//! and the `errmsg` the platform writes before ` rid: …`.

/// One refusal. The code and message are the platform's; where the platform's choice for a
/// case is not documented, the module docs of [`crate`] say which one the sandbox makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// −1: the platform is busy (a fault).
    SystemError,
    /// 40001: the token is unknown, or superseded by a force refresh or the admin call.
    InvalidCredential,
    /// 40002: `grant_type` is not `client_credential`.
    InvalidGrantType,
    /// 40003: the OpenID is not a user of this account.
    InvalidOpenid,
    /// 40008: the msgtype is unknown, or one the account's kind cannot send.
    InvalidMsgtype,
    /// 40013: no account has this AppID.
    InvalidAppid,
    /// 40033: the body holds a `\uXXXX` escape.
    InvalidCharset,
    /// 40097: a required field is missing (where no more precise code exists).
    InvalidArgs,
    /// 40101: the `custom/business/send` alias.
    MissingParameter,
    /// 40125: the AppSecret is not the account's.
    InvalidAppsecret,
    /// 40200: the typing path of the other kind of account.
    InvalidAccountType,
    /// 41001: no `access_token` in the query.
    MissingAccessToken,
    /// 41002: no `appid`.
    MissingAppid,
    /// 41004: no `secret`.
    MissingSecret,
    /// 41006: no `media_id` (or `thumb_media_id`).
    MissingMediaId,
    /// 41009: no `touser`.
    MissingOpenid,
    /// 42001: the token has expired.
    AccessTokenExpired,
    /// 44002: an empty body.
    EmptyPostData,
    /// 44003: a news message without an article.
    EmptyNews,
    /// 44004: a text message without content.
    EmptyContent,
    /// 45002: text above 2,048 bytes.
    ContentSize,
    /// 45008: news with more than one article.
    ArticleSize,
    /// 45015: the user has not written within the send window.
    OutOfTimeLimit,
    /// 45047: the messages one user message allows are used up.
    ResponseCount,
    /// 45072: a typing command other than `Typing` and `CancelTyping`.
    TypingCommand,
    /// 45080: no message interaction with the user in the last 30 s.
    TypingNoInteraction,
    /// 45081: the user already sees the account typing.
    AlreadyTyping,
    /// 47001: not JSON, or a field of the wrong JSON type.
    DataFormat,
}

impl Refusal {
    /// The `errcode`.
    pub(crate) const fn code(self) -> i64 {
        match self {
            Refusal::SystemError => -1,
            Refusal::InvalidCredential => 40001,
            Refusal::InvalidGrantType => 40002,
            Refusal::InvalidOpenid => 40003,
            Refusal::InvalidMsgtype => 40008,
            Refusal::InvalidAppid => 40013,
            Refusal::InvalidCharset => 40033,
            Refusal::InvalidArgs => 40097,
            Refusal::MissingParameter => 40101,
            Refusal::InvalidAppsecret => 40125,
            Refusal::InvalidAccountType => 40200,
            Refusal::MissingAccessToken => 41001,
            Refusal::MissingAppid => 41002,
            Refusal::MissingSecret => 41004,
            Refusal::MissingMediaId => 41006,
            Refusal::MissingOpenid => 41009,
            Refusal::AccessTokenExpired => 42001,
            Refusal::EmptyPostData => 44002,
            Refusal::EmptyNews => 44003,
            Refusal::EmptyContent => 44004,
            Refusal::ContentSize => 45002,
            Refusal::ArticleSize => 45008,
            Refusal::OutOfTimeLimit => 45015,
            Refusal::ResponseCount => 45047,
            Refusal::TypingCommand => 45072,
            Refusal::TypingNoInteraction => 45080,
            Refusal::AlreadyTyping => 45081,
            Refusal::DataFormat => 47001,
        }
    }

    /// The `errmsg`, before its ` rid: …` suffix.
    pub(crate) const fn message(self) -> &'static str {
        match self {
            Refusal::SystemError => "system error",
            Refusal::InvalidCredential => {
                "invalid credential, access_token is invalid or not latest"
            }
            Refusal::InvalidGrantType => "invalid grant_type",
            Refusal::InvalidOpenid => "invalid openid",
            Refusal::InvalidMsgtype => "invalid message type",
            Refusal::InvalidAppid => "invalid appid",
            Refusal::InvalidCharset => {
                "invalid charset. please check your request, if include \\uxxxx will create fail!"
            }
            Refusal::InvalidArgs => "invalid args",
            Refusal::MissingParameter => "missing parameter",
            Refusal::InvalidAppsecret => "invalid appsecret",
            Refusal::InvalidAccountType => "invalid account type",
            Refusal::MissingAccessToken => "access_token missing",
            Refusal::MissingAppid => "appid missing",
            Refusal::MissingSecret => "appsecret missing",
            Refusal::MissingMediaId => "media_id missing",
            Refusal::MissingOpenid => "missing openid",
            Refusal::AccessTokenExpired => "access_token expired",
            Refusal::EmptyPostData => "empty post data",
            Refusal::EmptyNews => "empty news data",
            Refusal::EmptyContent => "empty content",
            Refusal::ContentSize => "content size out of limit",
            Refusal::ArticleSize => "article size out of limit",
            Refusal::OutOfTimeLimit => "response out of time limit or subscription is canceled",
            Refusal::ResponseCount => "out of response count limit",
            Refusal::TypingCommand => "invalid command",
            Refusal::TypingNoInteraction => "no message interaction with the user in the last 30s",
            Refusal::AlreadyTyping => "already typing",
            Refusal::DataFormat => "data format error",
        }
    }
}
