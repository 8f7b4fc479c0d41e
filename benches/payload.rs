//! Benchmarks of the plaintext side of the hot path: building the `sendmsg` XML and parsing the
//! decrypted handoff callback.
//!
//! `cargo bench -p kefu-payload --bench payload`; see benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use kefu_payload::{Article, ArticleType, Channel, Event, HandoffCallback, Msg, News, SendMsg};

/// The callback of protocols.md §4.7: a user asking for a person.
const CALLBACK_TEXT: &str = "<xml><userid>oUSER</userid><appid>wx0000000000000000</appid><content><msg>我要转人工</msg></content><event></event><from>0</from><kfstate>3</kfstate><channel>0</channel><assessment>0</assessment><createtime>1700000000</createtime></xml>";
/// An agent joining inside the platform, with CDATA, whitespace and nested elements.
const CALLBACK_EVENT: &str = "<xml><userid><![CDATA[oUSER]]></userid><appid>wx1</appid>\n<content><msg></msg><msgtype>text</msgtype></content>\n<event>customerStuffEnter</event><customerInfo><name>小红</name><avatar>https://a/b.png</avatar><openid>oAGENT</openid></customerInfo><from>2</from></xml>";

fn bench_sendmsg(c: &mut Criterion) {
    let mut group = c.benchmark_group("sendmsg");
    let text = "您好，请问需要什么帮助？Please describe the problem & we'll look at it <soon>.";
    group.bench_function("build+to_xml/text", |b| {
        b.iter(|| {
            SendMsg::builder("oUSER", Channel::OfficialAccount, black_box(text))
                .appid("wx0000000000000000")
                .event(Event::WaiterEnter)
                .kefuname("客服小红")
                .build()
                .and_then(|send| send.to_xml())
                .expect("valid message")
        })
    });
    let long = text.repeat(40);
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("build+to_xml/text_3KiB", |b| {
        b.iter(|| {
            SendMsg::builder("oUSER", Channel::OfficialAccount, black_box(long.as_str()))
                .appid("wx0000000000000000")
                .build()
                .and_then(|send| send.to_xml())
                .expect("valid message")
        })
    });
    let article = Article {
        title: "退货说明".into(),
        description: "七天无理由退货的条件和流程".into(),
        url: "https://example.com/help/returns?from=kefu&id=42".into(),
        picurl: "https://example.com/img/returns.png".into(),
        article_type: Some(ArticleType::H5),
    };
    let news = Msg::News(News {
        articles: vec![article.clone(), article],
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("build+to_xml/news", |b| {
        b.iter(|| {
            SendMsg::builder("oUSER", Channel::OfficialAccount, black_box(news.clone()))
                .appid("wx0000000000000000")
                .build()
                .and_then(|send| send.to_xml())
                .expect("valid message")
        })
    });
    group.finish();
}

fn bench_callback(c: &mut Criterion) {
    let mut group = c.benchmark_group("callback");
    for (name, xml) in [("text", CALLBACK_TEXT), ("customer_event", CALLBACK_EVENT)] {
        group.throughput(Throughput::Bytes(xml.len() as u64));
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| HandoffCallback::parse(black_box(xml)).expect("valid callback"))
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    bench_sendmsg(&mut criterion);
    bench_callback(&mut criterion);
    criterion.final_summary();
}
