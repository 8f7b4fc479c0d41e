//! A small, bounded load run through the relay against a faulty platform (20 % system errors,
//! 5 % dropped answers): every acknowledged message ends delivered, failed or ambiguous, none is
//! lost and none reaches the platform twice.

use kefu_connector::bench::{BenchArgs, Provider, relay_report};

/// 600 messages of 16 users through `provider` against 20 % system errors and 5 % dropped
/// answers: every one accounted for, none lost, none sent twice, and some left ambiguous.
async fn faulty_load_loses_and_duplicates_nothing(provider: Provider) {
    let args = BenchArgs {
        users: 16,
        messages: 600,
        duration_secs: None,
        rate: None,
        concurrency: 16,
        system_error_rate: 0.2,
        drop_rate: 0.05,
        latency_ms: 0,
        seed: 42,
        outbox: None,
        store: None,
        relays: Vec::new(),
        no_direct: true,
        provider,
        inbound: false,
        webhook_delay_ms: 0,
    };
    let report = relay_report(&args).await.unwrap();
    assert_eq!(report.accepted, 600);
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.duplicated, 0, "{report:?}");
    assert_eq!(
        report.delivered + report.failed + report.ambiguous,
        report.accepted,
        "{report:?}"
    );
    assert!(
        report.ambiguous > 0,
        "5 % drops leave some ambiguous: {report:?}"
    );
    assert!(report.delivered > 400, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_platform_loses_and_duplicates_nothing() {
    faulty_load_loses_and_duplicates_nothing(Provider::Dialogue).await;
}

/// The same through an Official Account's `custom/send`: a dropped answer there means the
/// platform did accept the message, so it must end ambiguous and never be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_official_account_loses_and_duplicates_nothing() {
    faulty_load_loses_and_duplicates_nothing(Provider::Oa).await;
}
