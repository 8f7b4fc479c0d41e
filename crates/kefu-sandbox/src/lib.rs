//! `kefu-sandbox` (also `kefu-connector sandbox`): the Dialogue Open Platform (微信对话开放平台),
//! `api.weixin.qq.com` (stable_token, custom/send, typing), yunzhenji's `wechat/sendMessage` and
//! a company gateway's `sendCustomerMessage` emulated on loopback, with simulated users, so that
//! the demo, the tests and users' own integration tests run offline.
//!
//! # Dialogue platform endpoints (protocols.md §4.2–4.6)
//!
//! | Route | Plaintext | Success body |
//! |---|---|---|
//! | `POST /openapi/sendmsg/{TOKEN}` | [`SendMsg`](kefu_payload::SendMsg) XML | `{"errcode":0,"msg":"Success","rid":…}` |
//! | `POST /openapi/kefustate/get/{TOKEN}` | [`KefuStateGet`](kefu_payload::KefuStateGet) XML | `{"errcode":0,"kefustate":"on"\|"off","status":…,"rid":…}` (`status` only with `type` = `all`) |
//! | `POST /openapi/kefustate/change/{TOKEN}` | [`KefuStateChange`](kefu_payload::KefuStateChange) XML | `{"errcode":0,"errmsg":"","rid":…}` |
//!
//! The body is `{"encrypt":"<base64>"}`, decrypted with the sandbox's EncodingAESKey and checked
//! against its bot APPID (the receive-id). Checks run in this order; the first failure answers,
//! with HTTP 200 and a `rid` (8 hex digits) like the platform:
//!
//! 1. the TOKEN path segment, compared in constant time:
//!    `{"errcode":1001,"errmsg":"TOKEN is not valid","rid":…}`;
//! 2. `Content-Type: application/json`, which the platform documents as required. The
//!    platform's reaction is undocumented; the sandbox answers **HTTP 415**
//!    `{"errmsg":…,"rid":…}` so that a client that forgets the header fails loudly;
//! 3. the envelope: not UTF-8 JSON, or no `encrypt` key (for example the `encrypted` spelling
//!    that belongs to the callback): `{"errcode":-40002,…}`;
//! 4. decryption. The platform's code for a body it cannot decrypt is undocumented
//!    (protocols.md §11 item 9), so the sandbox answers the WXBizMsgCrypt code of the failed step
//!    with a precise `errmsg`: −40010 (not canonical base64), −40007 (length or padding: usually
//!    the wrong EncodingAESKey), −40008 (malformed frame), −40005 (the receive-id is not this
//!    bot's APPID). Real traffic may differ: treat any of these as "misconfigured key or APPID";
//! 5. the plaintext: not UTF-8 or not the endpoint's XML (no `<xml>` root, a missing
//!    `channel` or `kefustate`, a value outside its set): −40002 with the reason; then the
//!    platform's rules, with the bodies observed from the platform:
//!    * an empty or missing `openid` or `msg`, an empty `appid` on `kefustate/*`, or no `appid` on
//!      channels 0, 5 and 6: `{"errcode":1008,"errmsg":…}`;
//!    * channels 2, 3 and 4: `{"errorcode":2928312,"errormsg":"unsupport, to do.","rid":…}`;
//!    * channel 7 without an `appid`: `{"code":1011,"errcode":1011,"errmsg":"appid is not valid","rid":…}`.
//!
//!    Code 1007 belongs to the label APIs, which the sandbox does not serve. An undocumented
//!    channel such as 8 is −40002.
//!
//! Accepted messages are recorded ([`RecordedMessage`]). Each user has a handoff state,
//! `asking` until `kefustate/change` (or a user asking for a human) changes it; `kefustate` is
//! `on` exactly when the state is `personserving`. Events such as `waiterEnter` do not change
//! the state by themselves (unconfirmed on the platform, protocols.md §4.8): call
//! `kefustate/change`, as the connector does. A `waiterQualityEvaluate` opens a rating card for
//! the user (see `rate` below).
//!
//! # Faults (for tests and benchmarks)
//!
//! Faults apply to the platform endpoints only (the three Dialogue ones, the `cgi-bin` ones and
//! the two vendors' send endpoints below, which share one RNG), after the body has been read:
//! first the latency, then at most one fault. A Dialogue request hit by a fault is not processed
//! and not recorded. A `cgi-bin` or vendor request that is dropped **is** processed (a token
//! issued, a message accepted and recorded, the quota counted, yunzhenji's pushes scheduled)
//! before its connection is closed, as when the platform acted and the answer was lost; one
//! answered with the system error is not processed.
//!
//! * `latency`: a delay before every answer (cut short when the sandbox stops);
//! * `drop_rate`: the fraction of requests read and then answered by closing the connection,
//!   without a response: the client cannot know what happened (an ambiguous failure);
//! * `system_error_rate`: the fraction answered `{"success":false,"code":-1,"msg":"系统异常,请稍候再试","rid":…}`
//!   (Dialogue), `{"errcode":-1,"errmsg":"system error rid: …"}` (`cgi-bin`),
//!   `{"errcode":-1,"message":"系统繁忙,请稍后再试"}` (yunzhenji, HTTP 200) or HTTP 500
//!   `{"code":500,"msg":"系统异常,请联系管理员","data":null}` (the gateway);
//! * `seed`: seeds the RNG. Each request draws the same two numbers whatever the rates, so the
//!   same seed and the same sequence of requests give the same faults (and the same `rid`s).
//!   Concurrent requests draw in the order their bodies finish arriving.
//!
//! # Control routes
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /sandbox/messages[?openid=…]` | the accepted messages in order: a JSON array of [`RecordedMessage`] |
//! | `GET /sandbox/users/{openid}` | [`UserSnapshot`]: `{"openid","status","kefustate","kfstate","appid","channel","messages","evaluation_pending","assessment"}` |
//! | `POST /sandbox/users/{openid}/say` | body [`Say`] `{"text","channel"?,"appid"?}`; answer [`SayOutcome`] |
//! | `POST /sandbox/users/{openid}/ask-for-person` | body [`AskForPerson`] `{"text"?}` or none; answer [`SayOutcome`] |
//! | `POST /sandbox/users/{openid}/rate` | body `{"assessment": 1..=5}`; answer [`SayOutcome`] |
//! | `POST /sandbox/users/{openid}/enter` | no body (or `{}`); answer [`SayOutcome`] |
//! | `POST /sandbox/users/{openid}/leave` | no body (or `{}`); answer [`SayOutcome`] |
//! | `POST /sandbox/users/{openid}/redeliver` | body `{"reencrypt"?: false}` or none; answer [`SayOutcome`] |
//! | `POST /sandbox/oa/users/{openid}/say` | body [`OaSay`] `{"text","format"?,"mode"?}`; answer [`OaPushOutcome`] |
//! | `POST /sandbox/oa/users/{openid}/redeliver` | body `{"reencrypt"?: false}` or none; answer [`OaPushOutcome`] |
//! | `GET /sandbox/accounts/{appid}` | [`ApiAccountSnapshot`]: `{"appid","kind","token_fetches","force_refreshes","supersessions","accepted"}` |
//! | `GET /sandbox/accounts/{appid}/messages[?openid=…]` | the account's accepted `custom/send` and typing requests in order: a JSON array of [`ApiRequest`] `{"seq","appid","path","openid","kind","body","received_at_ms"}`, `body` exactly as received |
//! | `POST /sandbox/accounts/{appid}/supersede` | no body (or `{}`); every token of the account answers 40001 from now on; answer [`ApiAccountSnapshot`] |
//! | `POST /sandbox/accounts/{appid}/inject` | `{"errcode": N, "count": C}` (N not 0, C from 1 to 10,000): the account's next C `custom/send` and typing calls with a valid token answer `{"errcode":N,"errmsg":"injected by the sandbox … rid: …"}` and are not accepted, for the codes its rules cannot produce (45009, 45011, 70000, …); replaces an injection still pending; answer [`Injection`] |
//! | `GET /sandbox/accounts/{appid}/users/{openid}` | [`ApiUser`]: `{"openid","wrote_at_ms","sent_since_wrote","interaction_at_ms","typing_until_ms"}` |
//! | `POST /sandbox/accounts/{appid}/users/{openid}/write` | no body (or `{}`); the user writes to the account without a push: the window opens, the quota starts again; answer [`ApiUser`] |
//! | `GET /sandbox/yunzhenji` | [`YunzhenjiStatus`]: `{"callback","push_delay_ms","failure_rate","partial_next","accepted","pushes"}` (`callback` without its path) |
//! | `POST /sandbox/yunzhenji/settings` | body [`YunzhenjiChange`] `{"callback_url"?,"push_delay_ms"?,"failure_rate"?}`: applied whole or not at all (422 with the `field`); answer [`YunzhenjiStatus`] |
//! | `POST /sandbox/yunzhenji/partial` | `{"accept": N}`: the next valid `sendMessage` accepts only its first N messages; answer [`YunzhenjiStatus`] |
//! | `GET /sandbox/yunzhenji/messages[?target_wxid=…]` | the accepted messages in order: a JSON array of [`YunzhenjiMessage`] `{"seq","app_id","wxid","target_wxid","idx","msg_type","content","api_send_id","api_send_svrid","delayed_time","fails","received_at_ms"}` |
//! | `GET /sandbox/yunzhenji/pushes` | the finished pushes in order: a JSON array of [`YunzhenjiPush`] `{"seq","event","api_send_id","api_send_svrid","body","attempts","callback"}` |
//! | `POST /sandbox/yunzhenji/customers/{wxid}/say` | body [`CustomerSays`] `{"text","app_id"?,"group"?}`: the customer's `chatMsg` is pushed at once; answer [`YunzhenjiPush`] (502 when it could not be delivered) |
//! | `GET /sandbox/gateway` | [`GatewayStatus`]: `{"system","appid","errcode_as_string","injected","accepted"}` |
//! | `POST /sandbox/gateway/settings` | body [`GatewayChange`] `{"errcode_as_string"?: bool}`; answer [`GatewayStatus`] |
//! | `POST /sandbox/gateway/inject` | body [`GatewayInjection`] `{"errcode": N, "count": C, "as_string"?: bool}` or `{"code": M, "count": C}` (N not 0, M not 200, C from 1 to 10,000): the next C valid calls answer it and accept nothing; replaces an injection still pending; answer [`GatewayStatus`] |
//! | `GET /sandbox/gateway/messages[?openid=…]` | the gateway's accepted messages in order: a JSON array of [`GatewayMessage`] `{"seq","open_id","msg","received_at_ms"}` |
//!
//! Answers are 200 with the outcome (what the target answered: its status, body and the elapsed
//! time, or `not_configured` without a URL), or 502 with the same outcome when the push could not
//! be delivered within 5 s. Control errors are `{"error":{"message","field"?}}` with 400 (a body
//! that is not the route's JSON), 404, 405, 409 (well formed, but the state does not allow it
//! now), 413 or 422 (an invalid value, with its `field`).
//!
//! # The simulated user and the handoff callback
//!
//! Every user action pushes one handoff callback `POST {"encrypted":"…"}`
//! (`Content-Type: application/json`) to the callback URL, carrying the
//! [`HandoffCallback`](kefu_payload::HandoffCallback) XML encrypted with the bot's key and APPID:
//! `userid` = openid, `appid` and `channel` = what the user last used (in a `sendmsg`, a
//! `kefustate` call or a `say`; else [`DEFAULT_USER_APPID`] and 0), `from` = 0 (the user wrote
//! it), `kfstate` = the user's state after the action, and `createtime` = now (Unix seconds).
//!
//! | Action | `content/msg` | `event` | `assessment` | State |
//! |---|---|---|---|---|
//! | `say` | the text | empty | 0 | a text containing "转人工" moves `asking`/`complete` to `needperson` first, as the platform's handoff skill does; unchanged while `personserving` (the bot is silent then) |
//! | `ask-for-person` | the text ("转人工" by default) | empty | 0 | → `needperson` from `asking`, `complete` or `needperson`, whatever the text (the skill fired); **409** while `personserving`, when the skill does not fire |
//! | `rate` | empty | empty | 1..=5 | unchanged; only on a pending evaluation, see below |
//! | `enter` | empty | `userEnter` | 0 | unchanged |
//! | `leave` | empty | `userQuit` | 0 | unchanged |
//!
//! Decisions where protocols.md (§4.7–4.8) leaves room:
//!
//! * **Ratings.** The platform shows the rating card after a `waiterQualityEvaluate`, and the
//!   rating arrives as `assessment`. So `rate` is accepted only when the sandbox has accepted a
//!   `sendmsg` with `event` = `waiterQualityEvaluate` for the user that has not been rated yet:
//!   one rating per card. It is refused with 409 and a message that says why: no evaluation was
//!   ever sent, the last one was already rated, or a `waiterEnter` accepted after it started a
//!   new agent session (the old card no longer counts). `waiterQuit` and `kefustate/change` leave
//!   a pending card alone: users usually rate after the agent left. A rating outside 1..=5 is
//!   422.
//! * **Leaving** does not change the state: on the platform only `kefustate/change` and the
//!   handoff skill move it, so the callback reports it and the connector decides whether to
//!   end the session (`kefustate/change` → `complete`). A pending rating card stays pending.
//! * **Entering.** The documentation does not say when `userEnter` is sent (opening the
//!   conversation, such as the H5 page, rather than a first message), so a first `say` does not
//!   send one: every action pushes exactly one callback, and `enter` sends it explicitly.
//! * **Agents serving.** After `kefustate/change` → `personserving`, `kefustate/get` answers
//!   `on`; the sandbox has no bot, so there are no bot answers (`from` = 1) to hold back.
//!   Events such as `waiterEnter` do not change the state by themselves.
//!
//! `redeliver` re-posts the user's last callback: byte for byte (the default, a replay), or
//! with `{"reencrypt": true}` the same plaintext encrypted again with a fresh random prefix, as a
//! platform retry may be (protocols.md §9.3: dedup on the plaintext, not the ciphertext). It
//! changes no state, and "the last callback" stays the one the last action pushed. 409 before
//! any push for the user.
//!
//! # The Official Account push
//!
//! With [`SandboxConfig::oa`] (`--oa-token`, `--oa-aes-key`, `--oa-appid`, and
//! `--oa-callback-url` to deliver), `POST /sandbox/oa/users/{openid}/say` sends what WeChat
//! sends to an Official Account's server when the user writes a text (protocols.md §3.6–3.7):
//!
//! ```text
//! POST <url>?signature=…&timestamp=…&nonce=…&openid=…&encrypt_type=aes&msg_signature=…
//! Content-Type: text/xml
//!
//! <xml><ToUserName><![CDATA[gh_…]]></ToUserName><Encrypt><![CDATA[…]]></Encrypt></xml>
//! ```
//!
//! signed and encrypted with the **OA's** Token, EncodingAESKey and AppID (the receive-id), not
//! the bot's. `signature` is the plain signature (Token, timestamp, nonce), `msg_signature` covers
//! `Encrypt` too; the plaintext is the standard text message (`ToUserName`, `FromUserName` =
//! openid, `CreateTime`, `MsgType` = text, `Content`, a fresh 64-bit `MsgId`). The JSON format,
//! compatible mode and plain mode are available per account ([`OaAccount::format`],
//! [`OaAccount::mode`]) or per push ([`OaSay`]). Without a URL the push is built and reported
//! (`not_configured`); without an account the OA routes answer 409. OA pushes do not touch the
//! Dialogue state. `POST /sandbox/oa/users/{openid}/redeliver` re-sends the last push with the
//! same query and body, or with `{"reencrypt": true}` the same plaintext (same `MsgId`,
//! `timestamp` and `nonce`) encrypted again, with `msg_signature` recomputed.
//!
//! # `api.weixin.qq.com` (protocols.md §5, §6.1)
//!
//! The sandbox plays the platform for the Official Account and Mini Program accounts of
//! [`SandboxConfig::api`] (`--api-account KIND:APPID:SECRET`, repeatable). Without any, it has
//! two, for demos and quick tests:
//!
//! | Kind | AppID | AppSecret |
//! |---|---|---|
//! | Official Account (`oa`) | [`DEFAULT_OA_APPID`] `wx0a0a0a0a0a0a0a0a` | [`DEFAULT_OA_SECRET`] `0a0a…0a` (32 characters) |
//! | Mini Program (`mp`) | [`DEFAULT_MP_APPID`] `wx0b0b0b0b0b0b0b0b` | [`DEFAULT_MP_SECRET`] `0b0b…0b` (32 characters) |
//!
//! Point an account's `api_base_url` at [`Sandbox::api_base_url`] (`http://<addr>`). Every
//! answer is HTTP 200 with a JSON body; a refusal is `{"errcode":N,"errmsg":"<text> rid:
//! xxxxxxxx-xxxxxxxx-xxxxxxxx"}` with the platform's text, and the `rid`s repeat with the seed.
//! Checks run in the order listed; the first failure answers. The body checks shared by every
//! route: an empty body is 44002 `empty post data`; a body holding a `\uXXXX` escape anywhere
//! is 40033 (the raw bytes are checked, before parsing: `\\u` is an escaped backslash, not an
//! escape); a body that is not a JSON object, or a field of the wrong JSON type, is 47001
//! `data format error`.
//!
//! **`POST /cgi-bin/stable_token`** `{"grant_type","appid","secret","force_refresh"?}`: the body
//! checks; `grant_type` other than `client_credential` 40002; no `appid` 41002; no `secret`
//! 41004; an unknown AppID 40013; a wrong AppSecret (compared in constant time) 40125. Then
//! `{"access_token":"…","expires_in":N}` (136 characters; `expires_in` the whole seconds left):
//!
//! * normal mode gives the same token while it has more than 5 minutes left; in its last 5
//!   minutes a new one, and the old one keeps working until it expires (the overlap). With a
//!   lifetime under 10 minutes (`--token-lifetime-secs`, [`ApiSettings::token_lifetime`], for
//!   tests), the renewal starts at half the lifetime instead;
//! * `force_refresh: true` invalidates every live token of the account (they answer 40001) and
//!   issues a new one, at most 20 times in 24 hours and 30 s apart; beyond that it does not
//!   refresh and answers as normal mode does, as the platform documents;
//! * `POST /sandbox/accounts/{appid}/supersede` ([`Sandbox::supersede_token`]) invalidates every
//!   token of the account on demand, as another system's refresh would;
//! * `token_fetches` counts the answers with a token, `force_refreshes` the force refreshes that
//!   took effect ([`Sandbox::api_account`]). A token expired for over an hour is forgotten and
//!   answers 40001 rather than 42001.
//!
//! **`POST /cgi-bin/message/custom/send?access_token=…`**:
//!
//! 1. the token: none or empty 41001 `access_token missing`; unknown or superseded 40001
//!    `invalid credential, access_token is invalid or not latest`; expired 42001
//!    `access_token expired`. The token decides the account;
//! 2. the body checks (44002, 40033, 47001); no `touser` 41009 `missing openid`;
//! 3. `msgtype`: missing, unknown, or not one the account's kind sends (OA: text, image, voice,
//!    video, music, news, mpnews, mpnewsarticle, msgmenu, wxcard, miniprogrampage; MP: text,
//!    image, link, miniprogrampage) 40008 `invalid message type`;
//! 4. the payload object named by `msgtype` and its fields (a missing object counts as empty):
//!    text without `content` 44004 `empty content`, above 2,048 bytes 45002 `content size out
//!    of limit`; news without an article 44003 `empty news data`, with more than one 45008
//!    `article size out of limit`; a missing `media_id` (image, voice, video, mpnews) or
//!    `thumb_media_id` (video, music, miniprogrampage) 41006 `media_id missing`; any other
//!    missing required field 40097 `invalid args`: music `musicurl` and `hqmusicurl`,
//!    mpnewsarticle `article_id`, msgmenu a non-empty `list` of `{id, content}`, wxcard
//!    `card_id`, miniprogrampage `title`, `pagepath` and (OA only) `appid`, link `title`,
//!    `description`, `url` and `thumb_url`. `customservice.kf_account` is optional. The
//!    platform does not document its codes for most missing fields: these follow its global
//!    return codes, and real traffic may differ;
//! 5. the recipient: an OpenID that has not written to this account (a user of another
//!    account, or nobody) 40003 `invalid openid`;
//! 6. the send window: the user's last message is older than 48 hours (`--send-window-secs`)
//!    45015 `response out of time limit or subscription is canceled`;
//! 7. the quota: 5 messages accepted since the user's last message (`--quota-per-message`;
//!    the sources disagree, protocols.md §5.3) 45047 `out of response count limit`.
//!
//! Then `{"errcode":0,"errmsg":"ok"}`; the request is recorded with its raw body, counted
//! against the quota, counts as an interaction, and ends the typing state.
//!
//! `POST /cgi-bin/message/custom/business/send` answers 40101 `missing parameter`, as the
//! platform is reported to (protocols.md §5.1).
//!
//! **Typing**, `POST /cgi-bin/message/custom/typing?access_token=…` for an Official Account and
//! `POST /cgi-bin/message/custom/business/typing?access_token=…` for a Mini Program, body
//! `{"touser","command"}`: the token (41001, 40001, 42001); the other kind's path 40200
//! `invalid account type` (protocols.md §11 item 11 leaves MP's path unconfirmed: the sandbox
//! takes the current doc's); the body checks and 41009; a `command` other than `Typing` or
//! `CancelTyping` 45072; 40003 as above; a closed window 45015; no interaction (the user's
//! message or an accepted `custom/send`) in the last 30 s 45080; `Typing` while the typing
//! state (15 s) shows 45081. `CancelTyping` ends the state. Accepted calls are recorded too.
//!
//! **The users.** A user writes to an account by `POST /sandbox/accounts/{appid}/users/{openid}/write`
//! ([`Sandbox::api_user_writes`]), or by an Official Account push
//! (`POST /sandbox/oa/users/{openid}/say`) when an account has the push's AppID
//! ([`OaAccount::appid`]): so give the push account the API account's AppID, such as
//! [`DEFAULT_OA_APPID`], to play a whole conversation. Other `cgi-bin` paths are 404.
//!
//! # yunzhenji (云真机, protocols.md §7)
//!
//! **`POST /wechat/sendMessage`** stands in for `https://oapi-yzj.miaokol.com/wechat/sendMessage`:
//! point a yunzhenji account's `base_url` at [`Sandbox::url`]. The sandbox plays the accounts of
//! [`SandboxConfig::yunzhenji`] (`--yzj-account APP_ID:ACCESS_TOKEN:WXID`, repeatable); without
//! any, one:
//!
//! | `app_id` | `access_token` | `wxid` |
//! |---|---|---|
//! | [`DEFAULT_YZJ_APP_ID`] `yzj-sandbox` | [`DEFAULT_YZJ_ACCESS_TOKEN`] `yzj-sandbox-token` | [`DEFAULT_YZJ_WXID`] `1688850000000001` |
//!
//! Every answer is HTTP 200 with a JSON body. A refusal is `{"errcode":N,"message":"…"}`: the
//! key is **`message`**, not `errmsg`, as the vendor documents. **The vendor publishes no error
//! codes** (protocols.md §11 item 14): the codes below are the sandbox's own, so a client should
//! treat any non-zero `errcode` alike (terminal, with the `message` text). Checks run in this
//! order; the first failure answers:
//!
//! 1. 40000: the body is not a JSON object;
//! 2. 40001: `app_id`, `access_token`, `wxid` or `target_wxid` missing, empty or not a string, or
//!    `messages` not an array (`message` names the field);
//! 3. 40002: `app_id` and `access_token` do not name an account (the token is compared in constant
//!    time, and the message does not say which of the two is wrong);
//! 4. 40003: `wxid` is not the account's WeCom account;
//! 5. 40004: `messages` holds 0 or more than 5 messages;
//! 6. for each message in order (`message` names `messages[i]…`): not an object, no `msg_type`,
//!    no `content` object, an `api_send_id` that is neither a string nor an integer, or a
//!    `delayed_time` that is not a non-negative integer 40001; an unknown `msg_type` 40005; a
//!    missing or empty content field 40006: `text` needs a non-empty `items` array whose items
//!    have a `type`, and a `text` item its `text` (other item types, such as emoji, are
//!    unconfirmed and pass); `announcement` `text`; `picture` `url`; `link` `cover`, `desc`,
//!    `title` and `url`; `file` `title` and `url`; `voice` `url` and `duration` (and
//!    `org_content`, if present, a string), a `duration` outside 1..=60 being 40007. `video`,
//!    `program`, `card` and `channel` take any content object: the vendor lists them without
//!    their fields.
//!
//! Then `{"errcode":0,"data":[{"idx":0,"api_send_svrid":"…","api_send_id":"…"},…]}`: one entry
//! per accepted message, `api_send_id` echoed as it was sent (string or number) and only if it
//! was sent. `api_send_svrid` reads `<from>,<to>,<Unix ms><5 letters>`, like the vendor's
//! `168…,7…,1675997660116ABKocO`. After `POST /sandbox/yunzhenji/partial` `{"accept": N}`, the
//! next valid call accepts only its first N messages: `data` lacks the others, which are neither
//! recorded nor pushed (a refused call leaves the limit pending).
//!
//! **The pushes.** `errcode` 0 means the vendor passed the call on, not that anything was
//! delivered. For each accepted message the sandbox later POSTs (`Content-Type:
//! application/json`) to the callback URL (`--yzj-callback-url`, or `callback_url` of
//! `POST /sandbox/yunzhenji/settings`):
//!
//! ```text
//! {"event":"chatMsg","app_id":"yzj-sandbox","wxid":"1688850000000001",
//!  "data":{"api_send_id":"42","api_send_svrid":"1688850000000001,7881300000000001,1700000000000ABKocO",
//!          "from_wxid":"1688850000000001","to_wxid":"7881300000000001","msg_type":"text",
//!          "content":{"items":[{"type":"text","text":"您好"}]},"create_time":1700000000}}
//! ```
//!
//! for every message whether or not it is delivered, as the vendor documents, and then, for the
//! messages that fail (the fraction `--yzj-failure-rate`, or `failure_rate`, decided when they
//! are accepted with the seeded RNG and shown as `fails` in the record):
//!
//! ```text
//! {"event":"chatMsgSendFail","app_id":"yzj-sandbox","wxid":"1688850000000001",
//!  "data":{"api_send_id":"42","api_send_svrid":"…","to_wxid":"7881300000000001","message":"消息发送失败 (sandbox failure_rate)"}}
//! ```
//!
//! `api_send_id` appears only for messages sent with one, as sent. A call's pushes go out in
//! order (its `chatMsg`s, then its `chatMsgSendFail`s), starting `--yzj-push-delay-ms` (1,000
//! by default, at most an hour) after the call, or at the message's `delayed_time` if later (a
//! day at most). Each push is retried while the target answers other than 2xx or cannot be
//! reached, 3 attempts in all (250 ms, then 500 ms apart, 5 s each at most); pushes run in the
//! background, never holding up an answer, and stop with the sandbox. Finished pushes are listed
//! by `GET /sandbox/yunzhenji/pushes`. The real callback schema and its authentication are
//! unconfirmed (protocols.md §11 item 14): this is the sandbox's best reading of the vendor's
//! pages, and it carries no signature.
//!
//! **A customer writes.** `POST /sandbox/yunzhenji/customers/{wxid}/say` `{"text"}` pushes at
//! once a `chatMsg` without `api_send_id`, `from_wxid` = the customer, `to_wxid` = the account's
//! wxid (or `"group"`, a group's id), `msg_type` `text`.
//!
//! # The company gateway (protocols.md §8)
//!
//! **`POST /wisdom-api/weixin/v1/sendCustomerMessage`** stands in for the three documented
//! hosts: point a gateway account's `base_url` at [`Sandbox::url`]. The gateway sends through
//! one of the sandbox's `api.weixin.qq.com` accounts ([`GatewaySettings::appid`],
//! `--gateway-appid`; by default the first Official Account, [`DEFAULT_OA_APPID`]), so its known
//! `openId`s are that account's users: make one write with
//! `POST /sandbox/accounts/{appid}/users/{openid}/write`, and the account's send window and quota
//! apply. Checks, in order; the first failure answers HTTP 200 with
//! `{"code":N,"msg":"…","data":null}`. The gateway's own codes are undocumented (protocols.md §11
//! item 15; a sibling page shows 402), so these are the sandbox's choice:
//!
//! 1. no `system` header 401; one other than [`GatewaySettings::system`] (`NEW_MEMBER` by
//!    default, `--gateway-system`; compared exactly) 402;
//! 2. a `Content-Type` other than `application/json` (parameters allowed) 415 (inferred);
//! 3. a body that is not a JSON object 400; no non-empty string `openId` (camelCase: `openid` or
//!    `touser` do not count) 400 `openId 不能为空`; no non-empty string `msg` (rich JSON is not
//!    taken) 400 `msg 不能为空`.
//!
//! Then the text goes to WeChat as the account's `custom/send` (recorded with the account's
//! requests), and whatever WeChat answers comes back wrapped, **always with `code` 200**:
//! `{"code":200,"msg":"操作成功","data":{"errcode":0,"errmsg":"ok"}}`, or for a user who never
//! wrote `{"code":200,"msg":"操作成功","data":{"errcode":40003,"errmsg":"invalid openid rid: …"}}`
//! (likewise 45015, 45047, 45002, an injected account code, …). Only `data.errcode` 0 is an
//! accepted message (`GET /sandbox/gateway/messages`). With `errcode_as_string`
//! (`POST /sandbox/gateway/settings`) `data.errcode` is a numeric string (`"0"`, `"40003"`), as
//! the gateway's page types it. `POST /sandbox/gateway/inject` answers the next calls (after the
//! checks above) with a WeChat `errcode` inside code 200 (40001 stands for the gateway's own
//! token trouble), as a string with `"as_string": true`, or with a gateway `code` other than
//! 200; an injected answer accepts nothing.
//!
//! # In process
//!
//! ```no_run
//! use kefu_sandbox::{
//!     AskForPerson, DEFAULT_OA_APPID, OaAccount, OaSay, Redelivery, Sandbox, SandboxConfig, Say,
//! };
//! use kefu_client::Client;
//! use kefu_payload::{Channel, Event, SendMsg};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (token, key, appid) = ("SandboxToken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "Gg8HejYTkUsEIlG");
//! let mut config = SandboxConfig::new(token, key, appid);
//! config.callback_url = Some("http://127.0.0.1:8080/callback/secret".into());
//! // The push account has the default api.weixin.qq.com account's AppID, so that its pushes
//! // open that account's send window.
//! let mut oa = OaAccount::new("OaToken", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", DEFAULT_OA_APPID);
//! oa.callback_url = Some("http://127.0.0.1:8080/wechat/oa".into());
//! config.oa = Some(oa);
//! let sandbox = Sandbox::start(config).await?;
//!
//! let client = Client::builder(token, key, appid).base_url(sandbox.base_url()).build()?;
//! let msg = SendMsg::builder("oUSER", Channel::OfficialAccount, "您好")
//!     .appid("wx0000000000000000")
//!     .build()?;
//! client.send(&msg).await?;
//! assert_eq!(sandbox.messages(Some("oUSER")).len(), 1);
//!
//! let outcome = sandbox.say("oUSER", Say::new("我要转人工")).await?;
//! assert_eq!(outcome.kfstate, 3);
//! sandbox.ask_for_person("oUSER", AskForPerson::new().text("找客服")).await?;
//!
//! // A rating needs a waiterQualityEvaluate first.
//! assert!(sandbox.rate("oUSER", 5).await.is_err_and(|e| e.is_conflict()));
//! let card = SendMsg::builder("oUSER", Channel::OfficialAccount, "请评价")
//!     .appid("wx0000000000000000")
//!     .event(Event::WaiterQualityEvaluate)
//!     .build()?;
//! client.send(&card).await?;
//! sandbox.rate("oUSER", 5).await?;
//! sandbox.leave("oUSER").await?;
//! // The last callback (userQuit) again, re-encrypted as a platform retry may be.
//! sandbox.redeliver("oUSER", Redelivery::Reencrypt).await?;
//!
//! // The Official Account's own signed, encrypted push.
//! let push = sandbox.oa_say("oUSER", OaSay::new("你好")).await?;
//! println!("MsgId {} answered {:?}", push.msg_id, push.callback);
//! sandbox.oa_redeliver("oUSER", Redelivery::SameCiphertext).await?;
//!
//! // The account may answer the user through custom/send now: an account configured with
//! // api_base_url = sandbox.api_base_url() fetches POST /cgi-bin/stable_token and sends.
//! let user = sandbox.api_user(DEFAULT_OA_APPID, "oUSER").expect("a configured account");
//! assert!(user.wrote_at_ms.is_some() && user.sent_since_wrote == 0);
//! sandbox.stop().await;
//! # Ok(()) }
//! ```
//!
//! Secrets: the TOKENs, the EncodingAESKeys (the bot's and the OA's) and yunzhenji's access
//! tokens never appear in logs, answers or error messages; logged paths show `{TOKEN}` in place
//! of the TOKEN segment, request bodies and the gateway's `system` header are never logged, and
//! the push URLs are logged without their paths.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cgibin;
mod command;
mod config;
mod control;
mod dialogue;
mod faults;
mod gateway;
mod oa;
mod push;
mod server;
mod state;
mod user;
mod vendors_control;
mod yunzhenji;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rand::Rng as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cgibin::{
    AccountKind, ApiAccount, ApiAccountSnapshot, ApiRequest, ApiSettings, ApiUser,
    DEFAULT_MP_APPID, DEFAULT_MP_SECRET, DEFAULT_OA_APPID, DEFAULT_OA_SECRET, Injection,
};
pub use command::{SandboxArgs, VendorArgs, run};
pub use config::{DEFAULT_MAX_MESSAGES, SandboxConfig, SandboxError};
pub use faults::Fault;
pub use gateway::{
    DEFAULT_GATEWAY_SYSTEM, GatewayChange, GatewayInjection, GatewayMessage, GatewaySettings,
    GatewayStatus,
};
pub use oa::{DEFAULT_OA_ORIGINAL_ID, OaAccount, OaFormat, OaMode, OaPushOutcome, OaSay};
pub use push::CallbackDelivery;
pub use state::{RecordedMessage, UserSnapshot};
pub use user::{AskForPerson, DEFAULT_USER_APPID, Redelivery, Say, SayError, SayOutcome};
pub use yunzhenji::{
    CustomerSays, DEFAULT_YZJ_ACCESS_TOKEN, DEFAULT_YZJ_APP_ID, DEFAULT_YZJ_WXID, YunzhenjiAccount,
    YunzhenjiChange, YunzhenjiError, YunzhenjiMessage, YunzhenjiPush, YunzhenjiSettings,
    YunzhenjiStatus,
};

use cgibin::WeChatApi;
use config::{check_token, crypt, official_account};
use dialogue::Platform;
use faults::{Faults, check_rate};
use gateway::Gateway;
use oa::OfficialAccount;
use push::{Target, parse_callback_url};
use server::App;
use state::Store;
use yunzhenji::Yunzhenji;

/// A running sandbox. Stop it with [`Sandbox::stop`]; dropping it stops accepting connections
/// too, without waiting.
///
/// `Debug` shows the address and the seed only.
pub struct Sandbox {
    addr: SocketAddr,
    seed: u64,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Validates `config`, binds the listen address and starts serving.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        check_token(&config.token)?;
        let crypt = crypt(&config)?;
        let system_error_rate = check_rate(config.system_error_rate)
            .map_err(|reason| SandboxError::config("--system-error-rate", reason))?;
        let drop_rate = check_rate(config.drop_rate)
            .map_err(|reason| SandboxError::config("--drop-rate", reason))?;
        let callback = config
            .callback_url
            .as_deref()
            .map(parse_callback_url)
            .transpose()
            .map_err(|reason| SandboxError::config("--callback-url", reason))?;
        let oa = config.oa.as_ref().map(official_account).transpose()?;
        config
            .api
            .check()
            .map_err(|(setting, reason)| SandboxError::config(setting, reason))?;
        config
            .yunzhenji
            .check()
            .map_err(|(setting, reason)| SandboxError::config(setting, reason))?;
        let yzj_failure_rate = check_rate(config.yunzhenji.failure_rate)
            .map_err(|reason| SandboxError::config("--yzj-failure-rate", reason))?;
        let yzj_callback = config
            .yunzhenji
            .callback_url
            .as_deref()
            .map(parse_callback_url)
            .transpose()
            .map_err(|reason| SandboxError::config("--yzj-callback-url", reason))?;
        let seed = config.seed.unwrap_or_else(|| rand::rng().random());
        let api = WeChatApi::new(&config.api, config.max_messages, seed);
        let gateway = Gateway::new(&config.gateway, &api, config.max_messages)
            .map_err(|(setting, reason)| SandboxError::config(setting, reason))?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;

        let (shutdown, stopping) = watch::channel(false);
        let store = Arc::new(Store::new(config.max_messages));
        let callbacks = Target::new(callback);
        let target = callbacks.redacted();
        let oa_target = oa.as_ref().and_then(OfficialAccount::redacted_target);
        let oa_enabled = oa.is_some();
        let yunzhenji = Yunzhenji::new(
            &YunzhenjiSettings {
                failure_rate: yzj_failure_rate,
                ..config.yunzhenji.clone()
            },
            Target::new(yzj_callback),
            config.max_messages,
            seed,
            stopping.clone(),
        );
        let app = Arc::new(App {
            platform: Platform::new(&config.token, crypt.clone(), Arc::clone(&store), seed),
            api,
            yunzhenji: Arc::new(yunzhenji),
            gateway,
            store,
            faults: Faults::new(config.latency, system_error_rate, drop_rate, seed),
            callbacks,
            crypt,
            token: config.token.as_str().into(),
            shutdown: stopping.clone(),
            oa,
        });
        let task = tokio::spawn(server::serve(
            listener,
            Arc::clone(&app),
            config.limits,
            stopping,
        ));
        tracing::info!(
            %addr,
            seed,
            latency_ms = u64::try_from(config.latency.as_millis()).unwrap_or(u64::MAX),
            system_error_rate,
            drop_rate,
            callback = target.as_deref(),
            oa = oa_enabled,
            oa_callback = oa_target.as_deref(),
            api_accounts = %app
                .api
                .accounts()
                .map(|(appid, kind)| format!("{}:{appid}", kind.as_str()))
                .collect::<Vec<_>>()
                .join(","),
            yunzhenji_apps = %app.yunzhenji.app_ids().collect::<Vec<_>>().join(","),
            yunzhenji_callback = app.yunzhenji.redacted_target().as_deref(),
            gateway_system = %config.gateway.system,
            gateway_appid = app.gateway.status().appid.as_deref(),
            "sandbox listening"
        );
        Ok(Sandbox {
            addr,
            seed,
            app,
            shutdown,
            task,
        })
    }

    /// The address the sandbox listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the root of every route. An unspecified listen address (`0.0.0.0`,
    /// `[::]`) is shown as loopback, which is where a local client reaches it.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// `http://<addr>/openapi`: what kefu-client's `ClientBuilder::base_url` takes.
    pub fn base_url(&self) -> String {
        format!("{}/openapi", self.url())
    }

    /// `http://<addr>`, what stands in for `https://api.weixin.qq.com` (an account's
    /// `api_base_url`). The same as [`Sandbox::url`].
    pub fn api_base_url(&self) -> String {
        self.url()
    }

    /// The seed of the faults, given or picked at start.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The accepted messages in order: all of them, or one user's. The same data as
    /// `GET /sandbox/messages[?openid=…]`.
    pub fn messages(&self, openid: Option<&str>) -> Vec<RecordedMessage> {
        self.app.store.messages(openid)
    }

    /// Every message accepted from now on, as it is accepted: for tests and benchmarks that wait
    /// for deliveries or time them. A subscriber more than 65,536 messages behind misses some
    /// (`RecvError::Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<RecordedMessage>> {
        self.app.store.subscribe()
    }

    /// Points the Dialogue handoff callbacks at `url` (`http://` only) from now on, replacing
    /// `--callback-url`: for a relay that learns its own address only after the sandbox started.
    pub fn set_callback_url(&self, url: &str) -> Result<(), SandboxError> {
        let uri = parse_callback_url(url)
            .map_err(|reason| SandboxError::config("--callback-url", reason))?;
        self.app.callbacks.set(uri);
        Ok(())
    }

    /// Points the Official Account's pushes at `url` (`http://` only) from now on, replacing
    /// `--oa-callback-url`, as [`Sandbox::set_callback_url`] does for the Dialogue callbacks.
    /// Without an Official Account ([`SandboxConfig::oa`]) it is a configuration error.
    pub fn set_oa_callback_url(&self, url: &str) -> Result<(), SandboxError> {
        let uri = parse_callback_url(url)
            .map_err(|reason| SandboxError::config("--oa-callback-url", reason))?;
        let oa = self.app.oa.as_ref().ok_or_else(|| {
            SandboxError::config("--oa-appid", "no Official Account is configured")
        })?;
        oa.set_target(uri);
        Ok(())
    }

    /// A user's handoff state and what the sandbox knows of them, as
    /// `GET /sandbox/users/{openid}` shows it. Users never seen are `asking`.
    pub fn user(&self, openid: &str) -> UserSnapshot {
        self.app.store.snapshot(openid)
    }

    /// Plays the user typing a message, as `POST /sandbox/users/{openid}/say` does: moves the
    /// state if the text asks for a human, then pushes the handoff callback and reports what
    /// became of it. An undeliverable callback is an outcome, not an error.
    pub async fn say(&self, openid: &str, say: Say) -> Result<SayOutcome, SayError> {
        self.app.say(openid, say).await
    }

    /// Plays the user hitting the platform's handoff skill, as
    /// `POST /sandbox/users/{openid}/ask-for-person` does: the user moves to `needperson`
    /// (refused with [`SayError::AgentServing`] while an agent serves them), and the callback
    /// carries their text ("转人工" by default) with `kfstate` 3.
    pub async fn ask_for_person(
        &self,
        openid: &str,
        ask: AskForPerson,
    ) -> Result<SayOutcome, SayError> {
        self.app.ask_for_person(openid, ask).await
    }

    /// Plays the user rating the service (1..=5), as `POST /sandbox/users/{openid}/rate` does.
    /// Only after the sandbox accepted a `waiterQualityEvaluate` for the user, and once per
    /// evaluation ([`SayError::RatingNotExpected`] otherwise). The callback carries
    /// `assessment` = the rating, empty content and the user's current `kfstate`.
    pub async fn rate(&self, openid: &str, assessment: u8) -> Result<SayOutcome, SayError> {
        self.app.rate(openid, i64::from(assessment)).await
    }

    /// Plays the user opening the conversation, as `POST /sandbox/users/{openid}/enter` does:
    /// a callback with `event` = `userEnter` and empty content; the state does not change.
    pub async fn enter(&self, openid: &str) -> Result<SayOutcome, SayError> {
        self.app
            .act(openid, user::UserAction::Enter, None, None)
            .await
    }

    /// Plays the user leaving, as `POST /sandbox/users/{openid}/leave` does: a callback with
    /// `event` = `userQuit` and empty content; the state does not change.
    pub async fn leave(&self, openid: &str) -> Result<SayOutcome, SayError> {
        self.app
            .act(openid, user::UserAction::Leave, None, None)
            .await
    }

    /// Posts the user's last handoff callback again, as `POST /sandbox/users/{openid}/redeliver`
    /// does: the same body, or the same plaintext encrypted again. The outcome's `status` is the
    /// state that callback carries. [`SayError::NothingToRedeliver`] before any push.
    pub async fn redeliver(&self, openid: &str, how: Redelivery) -> Result<SayOutcome, SayError> {
        self.app.redeliver(openid, how).await
    }

    /// Plays the user writing a text to the Official Account, as
    /// `POST /sandbox/oa/users/{openid}/say` does: the standard message push, signed and
    /// encrypted with the OA's own credentials ([`SandboxConfig::oa`];
    /// [`SayError::NoOfficialAccount`] without them).
    pub async fn oa_say(&self, openid: &str, say: OaSay) -> Result<OaPushOutcome, SayError> {
        self.app.oa_say(openid, say).await
    }

    /// Sends the user's last Official Account push again, as
    /// `POST /sandbox/oa/users/{openid}/redeliver` does: the same query and body, or the same
    /// plaintext (same `MsgId`, `timestamp` and `nonce`) encrypted again and re-signed.
    pub async fn oa_redeliver(
        &self,
        openid: &str,
        how: Redelivery,
    ) -> Result<OaPushOutcome, SayError> {
        self.app.oa_redeliver(openid, how).await
    }

    /// An `api.weixin.qq.com` account's counters (token fetches, force refreshes, accepted
    /// requests), as `GET /sandbox/accounts/{appid}` shows them; `None` for an unknown AppID.
    pub fn api_account(&self, appid: &str) -> Option<ApiAccountSnapshot> {
        self.app.api.snapshot(appid)
    }

    /// The requests an account accepted (`custom/send` and typing) in order, with their raw
    /// bodies: all, or one user's. The same data as `GET /sandbox/accounts/{appid}/messages`.
    pub fn api_requests(&self, appid: &str, openid: Option<&str>) -> Option<Vec<ApiRequest>> {
        self.app.api.requests(appid, openid)
    }

    /// Supersedes every access token of the account, as `POST /sandbox/accounts/{appid}/supersede`
    /// does: the next call with one gets 40001, and the next `stable_token` issues a new one.
    pub fn supersede_token(&self, appid: &str) -> Option<ApiAccountSnapshot> {
        self.app.api.supersede(appid)
    }

    /// Plays the user writing to the account without a push, as
    /// `POST /sandbox/accounts/{appid}/users/{openid}/write` does: the send window opens and the
    /// quota starts again. (An Official Account push, [`Sandbox::oa_say`], does this too.)
    pub fn api_user_writes(&self, appid: &str, openid: &str) -> Option<ApiUser> {
        self.app.api.user_wrote(appid, openid, server::unix_ms())
    }

    /// A user of the account as the send rules see them.
    pub fn api_user(&self, appid: &str, openid: &str) -> Option<ApiUser> {
        self.app.api.user(appid, openid)
    }

    /// yunzhenji's messages accepted by `POST /wechat/sendMessage`, in order: all, or one
    /// target's. The same data as `GET /sandbox/yunzhenji/messages[?target_wxid=…]`.
    pub fn yunzhenji_messages(&self, target_wxid: Option<&str>) -> Vec<YunzhenjiMessage> {
        self.app.yunzhenji.messages(target_wxid)
    }

    /// yunzhenji's finished pushes (delivered or given up), in order, as
    /// `GET /sandbox/yunzhenji/pushes` lists them.
    pub fn yunzhenji_pushes(&self) -> Vec<YunzhenjiPush> {
        self.app.yunzhenji.pushes()
    }

    /// Changes where yunzhenji pushes, how long after a call, and how many messages fail, as
    /// `POST /sandbox/yunzhenji/settings` does: all of the change, or nothing.
    pub fn set_yunzhenji(
        &self,
        change: &YunzhenjiChange,
    ) -> Result<YunzhenjiStatus, YunzhenjiError> {
        self.app.yunzhenji.change(change)
    }

    /// The next valid `sendMessage` call accepts only its first `accept` messages (a partial
    /// `data` array), as `POST /sandbox/yunzhenji/partial` does.
    pub fn yunzhenji_accept_only(&self, accept: usize) -> YunzhenjiStatus {
        self.app.yunzhenji.accept_only(accept)
    }

    /// A customer (`wxid`) writes to the WeCom account, as
    /// `POST /sandbox/yunzhenji/customers/{wxid}/say` does: a `chatMsg` without `api_send_id`
    /// is pushed at once, and reported.
    pub async fn yunzhenji_customer_says(
        &self,
        wxid: &str,
        says: CustomerSays,
    ) -> Result<YunzhenjiPush, YunzhenjiError> {
        self.app
            .yunzhenji
            .customer_says(wxid, says, server::unix_ms())
            .await
    }

    /// The company gateway's accepted messages, in order: all, or one user's. The same data as
    /// `GET /sandbox/gateway/messages[?openid=…]`.
    pub fn gateway_messages(&self, open_id: Option<&str>) -> Vec<GatewayMessage> {
        self.app.gateway.messages(open_id)
    }

    /// Sets what the gateway's next calls answer, as `POST /sandbox/gateway/inject` does.
    /// `Err` says what is wrong with the injection.
    pub fn gateway_inject(&self, injection: GatewayInjection) -> Result<GatewayStatus, String> {
        self.app.gateway.inject(injection)
    }

    /// Changes how the gateway writes its answers, as `POST /sandbox/gateway/settings` does.
    pub fn set_gateway(&self, change: GatewayChange) -> GatewayStatus {
        self.app.gateway.change(change)
    }

    /// Stops gracefully: stops accepting, answers the requests in flight (latency is cut short),
    /// closes idle connections, and waits up to 5 s before cutting off the rest.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = (&mut self.task).await {
            tracing::warn!("the sandbox server task failed: {error}");
        }
        tracing::info!(addr = %self.addr, "sandbox stopped");
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn config() -> SandboxConfig {
        SandboxConfig::new("SecretTokenValue", KEY, "Gg8HejYTkUsEIlG")
    }

    async fn refused(config: SandboxConfig) -> SandboxError {
        match Sandbox::start(config).await {
            Ok(_) => panic!("the config should be refused"),
            Err(error) => error,
        }
    }

    #[tokio::test]
    async fn invalid_settings_are_refused_without_leaking_secrets() {
        let mut c = config();
        c.aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!".into();
        let err = refused(c).await;
        assert!(err.is_config());
        let text = err.to_string();
        assert!(
            text.contains("--aes-key") && text.contains("position 42"),
            "{text}"
        );
        assert!(!text.contains("abcdefgh") && !text.contains('!'), "{text}");

        let mut c = config();
        c.aes_key = "short".into();
        assert!(refused(c).await.to_string().contains("got 5"));

        let mut c = config();
        c.token = "Secret/Token".into();
        let text = refused(c).await.to_string();
        assert!(
            text.contains("position 6") && !text.contains("Secret"),
            "{text}"
        );

        let mut c = config();
        c.token = String::new();
        assert!(refused(c).await.to_string().contains("must not be empty"));

        let mut c = config();
        c.appid = String::new();
        assert!(refused(c).await.to_string().contains("--bot-appid"));

        let mut c = config();
        c.drop_rate = 1.5;
        assert!(refused(c).await.to_string().contains("--drop-rate"));

        let mut c = config();
        c.system_error_rate = f64::NAN;
        assert!(refused(c).await.to_string().contains("--system-error-rate"));

        let mut c = config();
        c.callback_url = Some("https://example.com/cb/hidden".into());
        let text = refused(c).await.to_string();
        assert!(
            text.contains("--callback-url") && !text.contains("hidden"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn invalid_official_account_settings_are_refused_without_leaking_secrets() {
        let oa = || OaAccount::new("OaSecretToken", KEY, "wx2c2769f8efd9abc2");
        type Break = fn(&mut OaAccount);
        let cases: [(Break, &str); 5] = [
            (|a| a.token = String::new(), "--oa-token"),
            (|a| a.appid = String::new(), "--oa-appid"),
            (|a| a.original_id = "gh_\u{1}".into(), "--oa-original-id"),
            (
                |a| a.aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!".into(),
                "--oa-aes-key",
            ),
            (
                |a| a.callback_url = Some("https://example.com/wx/hidden".into()),
                "--oa-callback-url",
            ),
        ];
        for (breaks, setting) in cases {
            let mut account = oa();
            breaks(&mut account);
            let mut c = config();
            c.oa = Some(account);
            let text = refused(c).await.to_string();
            assert!(text.contains(setting), "{setting}: {text}");
            assert!(
                !text.contains("OaSecretToken")
                    && !text.contains("abcdefgh")
                    && !text.contains("hidden"),
                "{text}"
            );
        }
        let mut c = config();
        c.oa = Some(oa());
        let text = format!("{c:?}");
        assert!(
            !text.contains("OaSecretToken") && text.contains("wx2c2769f8efd9abc2"),
            "{text}"
        );
        let sandbox = Sandbox::start(c).await.unwrap();
        let push = sandbox.oa_say("o", OaSay::new("hi")).await.unwrap();
        assert_eq!(push.callback, CallbackDelivery::NotConfigured);
        sandbox.stop().await;
        let sandbox = Sandbox::start(config()).await.unwrap();
        let error = sandbox.oa_say("o", OaSay::new("hi")).await.unwrap_err();
        assert!(
            error.is_conflict() && error.to_string().contains("--oa-token"),
            "{error}"
        );
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn urls_and_seed() {
        let mut c = config();
        c.seed = Some(99);
        let sandbox = Sandbox::start(c).await.unwrap();
        assert_eq!(sandbox.seed(), 99);
        let debug = format!("{sandbox:?}");
        assert!(
            debug.contains("seed: 99") && !debug.contains("SecretTokenValue"),
            "{debug}"
        );
        assert_eq!(sandbox.url(), format!("http://{}", sandbox.addr()));
        assert_eq!(
            sandbox.base_url(),
            format!("http://{}/openapi", sandbox.addr())
        );
        sandbox.stop().await;

        let mut c = config();
        c.listen = "0.0.0.0:0".parse().unwrap();
        let sandbox = Sandbox::start(c).await.unwrap();
        assert!(sandbox.url().starts_with("http://127.0.0.1:"));
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn a_say_that_cannot_be_written_changes_nothing() {
        let sandbox = Sandbox::start(config()).await.unwrap();
        let error = sandbox
            .say("o", Say::new("转人工\u{1}").channel(5).appid("wxA"))
            .await
            .unwrap_err();
        assert_eq!(error.field(), Some("text"), "{error}");
        let user = sandbox.user("o");
        assert_eq!(user.status, kefu_payload::KefuState::Asking);
        assert_eq!((user.appid, user.channel), (None, None));
        let error = sandbox.say("o", Say::new("")).await.unwrap_err();
        assert_eq!(error.field(), Some("text"));
        let error = sandbox.say("", Say::new("hi")).await.unwrap_err();
        assert_eq!(error.field(), Some("openid"));
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn logged_paths_never_show_the_token() {
        let sandbox = Sandbox::start(config()).await.unwrap();
        let app = &sandbox.app;
        for (path, expected) in [
            (
                "/openapi/sendmsg/SecretTokenValue",
                "/openapi/sendmsg/{TOKEN}",
            ),
            (
                "/openapi/kefustate/get/WrongToken",
                "/openapi/kefustate/get/{TOKEN}",
            ),
            (
                "/openapi/sendmsgs/SecretTokenValue",
                "/openapi/sendmsgs/{REDACTED}",
            ),
            ("/openapi/Other-Secret/x", "/openapi/{REDACTED}"),
            ("/SecretTokenValue/x", "/{TOKEN}/x"),
            ("/sandbox/users/o1", "/sandbox/users/o1"),
        ] {
            assert_eq!(app.redact_path(path), expected);
        }
        sandbox.stop().await;
    }
}
