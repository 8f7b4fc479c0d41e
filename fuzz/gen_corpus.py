#!/usr/bin/env python3
"""Regenerates the committed seed corpora, fuzz/corpus/<target>/seed-*.

Sources: crates/wxbizmsgcrypt/tests/vectors/published.json, the spec vectors of
docs/protocols.md §10 (V1-V5; each value is checked to still appear in the document), and the
documented payload examples. Run from anywhere: `python3 fuzz/gen_corpus.py`. It deletes the
old seed-* files first, so the result depends only on the sources; it never touches other files
in the corpus directories (libFuzzer's own additions, which are not committed).
"""

import base64
import json
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
DOC = (ROOT / "docs" / "protocols.md").read_text(encoding="utf-8")
PUBLISHED = json.loads(
    (ROOT / "crates/wxbizmsgcrypt/tests/vectors/published.json").read_text(encoding="utf-8")
)


def spec(value):
    """A value copied from docs/protocols.md; fails if the document no longer has it."""
    assert value in DOC, f"not in docs/protocols.md any more: {value[:60]}"
    return value


# protocols.md §10.
SAMPLE_KEY = spec("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
BOT_APPID = spec("Gg8HejYTkUsEIlG")
V1 = {
    "token": spec("spamtest"),
    "receiveid": spec("wx2c2769f8efd9abc2"),
    "timestamp": spec("1409735669"),
    "nonce": spec("1320562132"),
    "msg_signature": spec("5d197aaffba7e9b25a30732f161a50dee96bd5fa"),
    "encrypt": spec(
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
    ),
    "plain_signature": spec("16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"),
}
V2_MSG = spec(
    "<xml><appid><![CDATA[wx0000000000000000]]></appid><openid><![CDATA[oUSER]]></openid><msg><![CDATA[hello]]></msg><channel>0</channel></xml>"
)
V2_ENCRYPT = spec(
    "Q3stYC6hdFzMh9T8HCvyDPE2ieTdcQ/vBK1S4QECN+1Fx+GT1t8gA4DCfMvbFulM0rTHMLJnW441w3GjeO108LyFZ8jTAxMfK5b1fdwuN+xBl7jmWkVl4n9mhfPSsijlozW+htQhTQfbN6ErGS1+Ft1PsQ7n268Ksgo2YniXD5qF97Tz3yNNSgTOTtvnack7FOi0vauzJ+idP0vwgGao9dYj45Ua1mow9SOwlg3BpPd+Q1VoubHYINYOt5iOR3h6"
)
V2_BODY = spec('{"encrypt":"' + V2_ENCRYPT + '"}')
V3_MSG = spec("<xml><msg>hello!!</msg></xml>")
V3_ENCRYPT = spec(
    "Q3stYC6hdFzMh9T8HCvyDHXOHE9esN6APB/RuceWjUY/7UtMoN34Gw6tGWchw7DgguzSf3uvke1NfF5f8gSsSAirDjL+1QvBMzdZW9QQzVjDTm4BB+zc1Vxajbia7dyE"
)
V4_MSG = spec("你好😀")
V4_ENCRYPT = spec("Q3stYC6hdFzMh9T8HCvyDDzSJ6PKtMZfQkHuLIREQ3g=")
RANDOM16 = spec("0123456789abcdef").encode()
V5 = [
    ("AAAAA", spec("1714036504"), spec("1514711492"), spec("f464b24fc39322e44b38aa78f5edd27bd1441696")),
    ("AAAAA", spec("1714037059"), spec("486452656"), spec("899cf89e464efb63f54ddac96b0a0a235f53aa78")),
]
# protocols.md §4.7 (the documented callback, with the elided appid filled in).
CALLBACK_DOC = spec(
    "<xml><userid>oUSER</userid><appid>wx…</appid><content><msg>我要转人工</msg></content><event></event><from>0</from><kfstate>3</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>"
).replace("wx…", "wx0000000000000000")

seeds = {}


def seed(target, name, content):
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    assert (target, name) not in seeds, (target, name)
    seeds[(target, name)] = data


def full_str(msg, receive_id):
    """random16 ‖ u32be(len) ‖ msg ‖ receive_id, unpadded (the fuzz target pads)."""
    msg = msg.encode()
    return RANDOM16 + len(msg).to_bytes(4, "big") + msg + receive_id.encode()


# --- decrypt_str: the whole text with the V2/V3 account, or key\nreceive_id\nciphertext.
for name, encrypt in [("v1", V1["encrypt"]), ("v2", V2_ENCRYPT), ("v3", V3_ENCRYPT), ("v4", V4_ENCRYPT)]:
    seed("decrypt_str", name, encrypt)
seed("decrypt_str", "v2-spaced", f"  {V2_ENCRYPT}\r\n")
seed("decrypt_str", "v1-form-decoded", V1["encrypt"].replace("+", " "))
seed("decrypt_str", "v3-truncated", V3_ENCRYPT[:64])
seed("decrypt_str", "v4-keyed-empty-id", f"{SAMPLE_KEY}\n\n{V4_ENCRYPT}")
for v in PUBLISHED["positive"] + PUBLISHED["negative"]:
    seed("decrypt_str", v["name"], f"{v['encoding_aes_key']}\n{v['receiveid']}\n{v['encrypt']}")

# --- decrypt_bytes: plaintext FullStr (padded by the target) or whole blocks with their pad.
seed("decrypt_bytes", "v2-fullstr", full_str(V2_MSG, BOT_APPID))
seed("decrypt_bytes", "v3-fullstr-pad32", full_str(V3_MSG, BOT_APPID) + bytes([32]) * 32)
seed("decrypt_bytes", "v4-fullstr", full_str(V4_MSG, ""))
seed("decrypt_bytes", "v1-ciphertext", base64.b64decode(V1["encrypt"]))
seed("decrypt_bytes", "v2-ciphertext", base64.b64decode(V2_ENCRYPT))
seed("decrypt_bytes", "msg-len-too-long", RANDOM16 + (1000).to_bytes(4, "big") + b"x" + BOT_APPID.encode())

# --- signature: token\ntimestamp\nnonce\nencrypt\ncandidate.
seed(
    "signature",
    "v1",
    "\n".join([V1["token"], V1["timestamp"], V1["nonce"], V1["encrypt"], V1["msg_signature"]]),
)
seed(
    "signature",
    "v1-plain",
    "\n".join([V1["token"], V1["timestamp"], V1["nonce"], "", V1["plain_signature"]]),
)
for i, (token, timestamp, nonce, signature) in enumerate(V5, 1):
    seed("signature", f"v5-{i}", "\n".join([token, timestamp, nonce, "", signature]))
for v in PUBLISHED["signature_only"]:
    seed("signature", v["name"], "\n".join([v["token"], v["timestamp"], v["nonce"], v["encrypt"], v["msg_signature"]]))
for v in PUBLISHED["positive"][:4] + PUBLISHED["negative"]:
    seed("signature", v["name"], "\n".join([v["token"], v["timestamp"], v["nonce"], v["encrypt"], v["msg_signature"]]))
seed("signature", "uppercase", "\n".join([V1["token"], V1["timestamp"], V1["nonce"], V1["encrypt"], V1["msg_signature"].upper()]))

# --- verify_url: token\nkey\nreceive_id\nmsg_signature\ntimestamp\nnonce\nechostr.
def url_seed(name, v):
    seed(
        "verify_url",
        name,
        "\n".join(
            [v["token"], v["encoding_aes_key"], v["receiveid"], v["msg_signature"], v["timestamp"], v["nonce"], v["encrypt"]]
        ),
    )


url_seed("v1", dict(V1, encoding_aes_key=SAMPLE_KEY))
for v in PUBLISHED["positive"]:
    if "verifyurl" in v["name"] or "echostr" in v["name"]:
        url_seed(v["name"], v)
for v in PUBLISHED["negative"]:
    url_seed(v["name"], v)

# --- envelope_xml.
oa_push = f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{V1['encrypt']}]]></Encrypt></xml>"
seed("envelope_xml", "oa-push", oa_push)
seed(
    "envelope_xml",
    "wecom-push",
    f"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName><Encrypt><![CDATA[{V1['encrypt']}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
)
seed(
    "envelope_xml",
    "compatible-mode",
    "<xml>\n<ToUserName><![CDATA[gh_1]]></ToUserName>\n<FromUserName><![CDATA[oU]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abc]]></Content>\n"
    f"<MsgId>6054768590064713728</MsgId>\n<Encrypt><![CDATA[{V3_ENCRYPT}]]></Encrypt>\n</xml>",
)
seed(
    "envelope_xml",
    "reply",
    f"<xml><Encrypt><![CDATA[{V3_ENCRYPT}]]></Encrypt><MsgSignature><![CDATA[{V1['msg_signature']}]]></MsgSignature>"
    f"<TimeStamp>{V1['timestamp']}</TimeStamp><Nonce><![CDATA[{V1['nonce']}]]></Nonce></xml>",
)
seed(
    "envelope_xml",
    "escapes",
    "<?xml version=\"1.0\"?><xml><!-- c --><Nonce>a&amp;b&#13;&#x1F600;</Nonce><TimeStamp> 1 </TimeStamp>"
    "<MsgSignature><![CDATA[x]]]]><![CDATA[>y]]></MsgSignature><Encrypt>E<![CDATA[F]]>&lt;</Encrypt></xml>",
)
seed("envelope_xml", "doctype", "<!DOCTYPE xml [<!ENTITY e 'x'>]><xml><Encrypt>&e;</Encrypt></xml>")

# --- envelope_json.
seed("envelope_json", "dialogue-request-v2", V2_BODY)
seed("envelope_json", "dialogue-callback", '{"encrypted":"' + V3_ENCRYPT + '"}')
seed("envelope_json", "json-push", '{"ToUserName":"gh_10f6c3c3ac5a","Encrypt":"' + V1["encrypt"] + '"}')
seed(
    "envelope_json",
    "oa-reply",
    json.dumps(
        {"Encrypt": V3_ENCRYPT, "MsgSignature": V1["msg_signature"], "TimeStamp": int(V1["timestamp"]), "Nonce": V1["nonce"]},
        separators=(",", ":"),
    ),
)
seed(
    "envelope_json",
    "wecom-reply",
    json.dumps(
        {"encrypt": V3_ENCRYPT, "msgsignature": V1["msg_signature"], "timestamp": V1["timestamp"], "nonce": V1["nonce"]},
        separators=(",", ":"),
    ),
)
seed("envelope_json", "escapes", '{"encrypt":"a\\u00e9\\n\\"\\ud83d\\ude00","nonce":"\\/"}')

# --- envelope_extract.
seed("envelope_extract", "bare-v1", V1["encrypt"])
seed("envelope_extract", "bare-wrapped", "\ufeff " + "\n".join(V2_ENCRYPT[i : i + 76] for i in range(0, len(V2_ENCRYPT), 76)) + "\r\n")
seed("envelope_extract", "bare-space", V1["encrypt"].replace("+", " "))
seed("envelope_extract", "json-v2", V2_BODY)
seed("envelope_extract", "json-oa-reply", '{"Encrypt":"E","MsgSignature":"S","TimeStamp":1348831860,"Nonce":"N"}')
seed("envelope_extract", "json-two-keys", '{"Encrypt":"E","encrypted":"F"}')
seed("envelope_extract", "xml-push", oa_push)

# --- handoff_callback.
seed("handoff_callback", "doc-example", CALLBACK_DOC)
seed(
    "handoff_callback",
    "customer-stuff-enter",
    "<xml><userid><![CDATA[oUSER]]></userid><appid>wx0000000000000000</appid><content><msg></msg><msgtype>text</msgtype></content>"
    "<event>customerStuffEnter</event><customerInfo><name>小红</name><avatar>https://example.com/a.png</avatar><openid>oAGENT</openid></customerInfo>"
    "<from>2</from><kfstate>1</kfstate><channel>8</channel><createtime> 1700000000 </createtime><unknown><x/></unknown></xml>",
)
seed(
    "handoff_callback",
    "rich-content",
    '<xml><userid>oUSER</userid><appid></appid><content><msg>{"image":{"media_id":"M"}}</msg></content>'
    "<event>waiterQuit</event><from>1</from><kfstate></kfstate><assessment>5</assessment></xml>",
)

# --- sendmsg: structured bytes and plaintext XML alike; seed with the documented plaintexts.
seed("sendmsg", "v2-plaintext", V2_MSG)
seed(
    "sendmsg",
    "spec-example",
    "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><msg>您好,请问需要什么帮助</msg><channel>0</channel>"
    "<event>waiterEnter</event><kefuname>客服小红</kefuname><kefuavatar>https://example.com/a.png</kefuavatar></xml>",
)
seed(
    "sendmsg",
    "rich-news",
    '<xml><openid>oUSER</openid><msg>{"news":{"articles":[{"title":"T","description":"D","url":"https://e.com","picurl":"https://e.com/p.png","type":"h5"}]}}</msg>'
    "<channel>7</channel><appid>TOKEN</appid><ans_node_name>售后</ans_node_name></xml>",
)
seed("sendmsg", "kefustate-get", "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><type>detail</type></xml>")
seed("sendmsg", "kefustate-change", "<xml><appid>wx0000000000000000</appid><openid>oUSER</openid><kefustate>personserving</kefustate></xml>")

# --- desk_api: POST /v1/messages bodies, accepted and refused (as in tests/relay_api.rs).
for name, body in [
    ("web-h5", {"openid": "o1", "channel": 7, "msg": "hi"}),
    ("oa-with-appid", {"openid": "o1", "channel": 0, "appid": "wx1", "msg": "hi", "event": "waiterEnter", "kefuname": "小红"}),
    ("oa-default-appid", {"openid": "o1", "channel": 0, "msg": "hi", "kefuavatar": "", "ans_node_name": "n"}),
    ("rich-news", {"openid": "o1", "channel": 1, "msg": {"news": {"articles": [{"title": "t", "description": "d", "url": "u", "picurl": "p"}]}}}),
    ("multimsg", {"openid": "o1", "channel": 9, "msg": {"multimsg": ["a", {"image": {"url": "u"}}, {"miniprogrampage": {"title": "t", "appid": "a", "pagepath": "p"}}]}}),
    ("closed-channel", {"openid": "o1", "channel": 2, "appid": "wx1", "msg": "hi"}),
    ("unknown-field", {"openid": "o1", "channel": 0, "appid": "wx1", "msg": "hi", "colour": 1}),
    ("bad-event", {"openid": "o1", "channel": 0, "appid": "wx1", "msg": "hi", "event": "waiterDance"}),
    ("control-char", {"openid": "o1", "channel": 0, "appid": "wx1", "msg": "a\u0001b"}),
]:
    seed("desk_api", name, json.dumps(body, ensure_ascii=False, separators=(",", ":")))
seed("desk_api", "truncated", '{"openid":"o1","channel":7,"msg":"hi"')

# --- cgibin: `size\n` then a desk body, a text to split, or an answer (protocols.md §5).
for name, text in [
    ('answer-45015', '64\n{"errcode":45015,"errmsg":"response out of time limit or subscription is canceled rid: 5f3ded7d-22929d02-4ba1f5f6"}'),
    ('answer-token', '64\n{"access_token":"ACCESS_TOKEN","expires_in":7200}'),
    ('desk-link', '2000\n{"openid":"oMP","msg":{"link":{"title":"t","description":"d","url":"https://e.com","thumb_url":"https://e.com/t.png"}}}'),
    ('desk-msgmenu', '2000\n{"openid":"oUSER","msg":{"msgmenu":{"head_content":"满意吗","list":[{"id":"101","content":"满意"}],"tail_content":"谢谢"}},"kf_account":"a@b"}'),
    ('desk-multimsg', '64\n{"openid":"oUSER","msg":{"multimsg":["一",{"image":{"media_id":"M"}},{"news":{"articles":[{"title":"t","url":"u"}]}}]}}'),
    # An escaped backslash before a `u` is not a `\\uXXXX` escape (the target once said it was).
    ('desk-backslash-u', '20\n{"openid":"o\\\\\\\\unu","msg":"a\\\\u4f60"}'),
    ('desk-text', '2000\n{"openid":"oUSER","msg":"您好 <a href=\\"https://e.com/?a=1&b=2\\">链接</a>"}'),
    ('split-links', '16\n<a href="x">一二三四五六</a> tail <a unclosed'),
]:
    seed("cgibin", name, text)

# --- yunzhenji_callback: the shape the sandbox pushes (common to the relay and the sandbox), and
# other spellings and nestings the parser must also read.
for name, body in [
    ("chatmsg", {"event": "chatMsg", "app_id": "A", "wxid": "ACCOUNT", "data": {"api_send_id": "42", "api_send_svrid": "1685,7,1675997660116ABKocO", "from_wxid": "ACCOUNT", "to_wxid": "CUSTOMER", "msg_type": "text", "content": {"items": [{"type": "text", "text": "您好"}]}, "create_time": 1700000000}}),
    ("sendfail", {"event": "chatMsgSendFail", "app_id": "A", "wxid": "ACCOUNT", "data": {"api_send_id": 42, "api_send_svrid": "S", "to_wxid": "CUSTOMER", "message": "offline"}}),
    ("customer", {"event": "chatMsg", "wxid": "ACCOUNT", "data": {"api_send_svrid": "S", "from_wxid": "CUSTOMER", "to_wxid": "ACCOUNT", "msg_type": "text", "content": {"items": [{"type": "text", "text": "hi"}]}}}),
    ("flat", {"Type": "CHATMSG", "apiSendId": 42, "sender": "A", "receiver": "G@chatroom", "msgType": "text", "content": "plain"}),
    ("nested", {"code": 0, "payload": {"callback_type": "ChatMsgSendFail", "list": [{"msg": {"api_send_id": " 43 ", "to": "C", "reason": "rate limited"}}]}}),
]:
    seed("yunzhenji_callback", name, json.dumps(body, ensure_ascii=False, separators=(",", ":")))

# --- yunzhenji: `size\n` then a desk body or a sendMessage answer (protocols.md §7).
for name, size, body in [
    ("desk-multimsg", 5, {"target_wxid": "wxid_c", "msg": {"multimsg": ["您好", {"announcement": "通知"}, {"picture": {"url": "https://e.com/p.png"}}, {"link": {"cover": "https://e.com/c.png", "desc": "D", "title": "T", "url": "https://e.com"}}, {"file": {"title": "a.pdf", "url": "https://e.com/a.pdf"}}, {"voice": {"url": "https://e.com/v.mp3", "duration": 3}}]}}),
    ("desk-unspecified", 1, {"target_wxid": "wxid_c", "msg": {"video": {"url": "https://e.com/v.mp4"}}}),
    ("answer-partial", 3, {"errcode": "0", "data": [{"idx": 0, "api_send_svrid": "S0", "api_send_id": "1"}, {"idx": 2, "api_send_svrid": "S2", "api_send_id": "3"}]}),
    ("answer-refused", 2, {"errcode": 10003, "message": "企微号不在线"}),
]:
    seed("yunzhenji", name, f"{size}\n" + json.dumps(body, ensure_ascii=False, separators=(",", ":")))

# --- gateway: a desk body or a sendCustomerMessage answer (protocols.md §8.2).
for name, body in [
    ("desk-text", {"openid": "oc63ewmuBYT11PkeC2IEsT0n2gggg", "msg": "客服消息"}),
    ("desk-rich", {"openid": "o1", "msg": {"image": {"media_id": "M"}}}),
    ("answer-ok", {"code": 200, "msg": "操作成功", "data": {"errcode": 0, "errmsg": "ok"}}),
    ("answer-40003", {"code": 200, "msg": "操作成功", "data": {"errcode": 40003, "errmsg": "invalid openid rid: 66f3bd4d-25a283a9-73c6a452"}}),
    ("answer-string-code", {"code": "200", "msg": "操作成功", "data": {"errcode": "42001", "errmsg": "access_token expired"}}),
    ("answer-402", {"code": 402, "msg": "无权限"}),
]:
    seed("gateway", name, json.dumps(body, ensure_ascii=False, separators=(",", ":")))

for directory in CORPUS.glob("*/"):
    for old in directory.glob("seed-*"):
        old.unlink()
for (target, name), data in sorted(seeds.items()):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)
total = sum(len(d) for d in seeds.values())
print(f"{len(seeds)} seeds, {total} bytes, in {len({t for t, _ in seeds})} targets")
