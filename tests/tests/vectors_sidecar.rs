//! Every signature vector through the real `hookguard-sidecar` binary, not the verifier unit:
//! routing, verification, delivery-ID extraction, the event-type filter, dedup and forwarding
//! to a real app, as a sender meets them. A new vector needs a JSON entry, no code.
//!
//! The vectors are every `*.json` of the shared directory (`$HOOKGUARD_VECTORS_DIR`, else
//! `../shared/vectors`) and of the repository's `vectors/`. Each file gets its own sidecar
//! (memory store), under libfaketime with the realtime clock stopped at the vectors'
//! `now_unix`, and its own [`TestApp`]; each vector gets its own endpoint, so every request is
//! sent at once except the steps of a dedup sequence. Per vector:
//!
//! - valid: the app's own 200, the app saw it once, with `X-Hookguard-Delivery-Id` equal to
//!   `dedup_key`; a vector with `expect_response` (Zoom's URL validation) is answered by the
//!   sidecar with exactly that JSON and never reaches the app.
//! - invalid: `expect_status`, else the status of its `category`; the app saw nothing.
//! - a valid vector with an `event_type`: subscribed to it, forwarded; subscribed only to
//!   another type, 200 `filtered` and not forwarded.
//! - each dedup sequence on a fresh endpoint: `forward` reaches the app, `duplicate` is a 200
//!   `duplicate` that does not.
//! - a valid vector without `dedup_key` or `expect_response` (e.g. Stripe's empty-body probe):
//!   either forwarded without a delivery ID (a handshake such as Slack's `url_verification`)
//!   or a 400 whose metric reason is the missing delivery ID, i.e. the signature did pass.
//!
//! Each sidecar's clock is proven stopped at `now_unix` before its vectors and again at least
//! 1.5 s later ([`FrozenSidecar::check_clock`]), and the boundary vectors at exactly
//! `±tolerance_s` pass only on such a clock.
//!
//! All failures are collected and reported together with the vector IDs, so one run shows
//! every disagreement; every scheme must have a vector file.

// clippy.toml allows unwrap/panic inside #[test] functions only; the helpers beside them are
// test code too.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hookguard_api::Scheme;
use hookguard_api::names::{HEADER_DELIVERY_ID, HEADER_ENDPOINT};
use hookguard_tests::app::{Arrival, TestApp};
use hookguard_tests::sidecar::Answer;
use hookguard_tests::vectors::{
    self, Action, DedupSequence, Expect, FoundFile, FrozenSidecar, UNSUBSCRIBED_EVENT_TYPE, Vector,
    VectorEndpoint, VectorFile, config_scheme,
};
use serde_json::Value;

/// The body of [`TestApp::ok`]'s answers: a 200 with it came from the app, not the sidecar.
const APP_BODY: &str = "app 200 OK\n";
/// How long after a sidecar is ready its clock is checked again at the earliest: long enough
/// that a clock started (not stopped) at `now_unix` has moved a second on.
const CLOCK_CHECK_AFTER: Duration = Duration::from_millis(1500);

/// What one vector file's run found.
#[derive(Debug, Default)]
struct FileReport {
    label: String,
    scheme: Option<&'static str>,
    valid: usize,
    invalid: usize,
    sequences: usize,
    filter_checks: usize,
    failed: BTreeSet<String>,
    failures: Vec<String>,
    log: Option<String>,
}

impl FileReport {
    /// A problem of vector `id`, reported as `label`.
    fn fail_vector(&mut self, id: &str, label: &str, problem: impl std::fmt::Display) {
        self.failed.insert(id.to_owned());
        self.failures.push(format!("{label}: {problem}"));
    }

    /// A problem of the vector `id`.
    fn fail(&mut self, id: &str, problem: impl std::fmt::Display) {
        self.fail_vector(id, id, problem);
    }

    /// A problem of the file or of a sequence, `label`.
    fn fail_other(&mut self, label: &str, problem: impl std::fmt::Display) {
        self.failures.push(format!("{label}: {problem}"));
    }
}

/// What a vector's endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The vector as it is.
    Plain,
    /// `eventTypes: [event_type]`.
    Subscribed,
    /// `eventTypes: [UNSUBSCRIBED_EVENT_TYPE]`.
    Unsubscribed,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Plain => "",
            Role::Subscribed => " [eventTypes: its own]",
            Role::Unsubscribed => " [eventTypes: another]",
        }
    }
}

/// One request of the run: vector `vector` to `endpoint`.
struct Send<'a> {
    vector: &'a Vector,
    endpoint: VectorEndpoint,
    role: Role,
}

/// A dedup sequence with its endpoint and vectors.
struct Sequence<'a> {
    description: &'a str,
    endpoint: VectorEndpoint,
    steps: Vec<(&'a Vector, Action)>,
}

/// The arrivals at the app through one endpoint.
fn arrivals_at(app: &TestApp, endpoint: &str) -> Vec<Arrival> {
    app.all_arrivals()
        .into_iter()
        .filter(|a| {
            a.headers
                .get(HEADER_ENDPOINT)
                .is_some_and(|v| v == endpoint)
        })
        .collect()
}

/// An answer for a message: status, outcome, the sidecar's rejection reason, body.
fn describe(answer: &Answer, reasons: Option<&Vec<String>>) -> String {
    let outcome = answer
        .outcome
        .as_ref()
        .map(|outcome| format!(" {outcome}"))
        .unwrap_or_default();
    let reasons = reasons
        .map(|reasons| format!(" (reason {})", reasons.join(", ")))
        .unwrap_or_default();
    let body: String = answer.body.trim_end().chars().take(120).collect();
    format!("{}{outcome}{reasons} {body:?}", answer.status)
}

/// The status an invalid vector's category stands for, as `sidecar/tests/vectors.rs` maps it.
fn category_allows(category: &str, status: u16) -> bool {
    match category {
        "header" => status == 400,
        "signature" | "timestamp" | "body" => status == 401,
        "strictness" => status == 400 || status == 401,
        _ => (400..500).contains(&status),
    }
}

/// What is wrong with a valid vector's answer and its arrivals at the app.
fn check_valid(
    vector: &Vector,
    answer: &Answer,
    arrivals: &[Arrival],
    reasons: Option<&Vec<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let from_app = answer.status == 200 && answer.outcome.is_none() && answer.body == APP_BODY;
    if let Some(want) = &vector.expect_response {
        let got: Option<Value> = serde_json::from_str(&answer.body).ok();
        if answer.status != 200 || got.as_ref() != Some(want) {
            problems.push(format!(
                "expected the sidecar's own 200 with {want}, got {}",
                describe(answer, reasons)
            ));
        }
        if !arrivals.is_empty() {
            problems.push(format!(
                "the app saw it {} time(s); the sidecar answers it itself",
                arrivals.len()
            ));
        }
    } else if let Some(key) = &vector.dedup_key {
        if !from_app {
            problems.push(format!(
                "expected the app's 200, got {}",
                describe(answer, reasons)
            ));
        }
        if arrivals.len() != 1 {
            problems.push(format!(
                "the app saw it {} time(s), want once",
                arrivals.len()
            ));
        }
        for arrival in arrivals {
            let id = arrival.headers.get(HEADER_DELIVERY_ID);
            if id.is_none_or(|id| id != key.as_str()) {
                problems.push(format!(
                    "{HEADER_DELIVERY_ID} at the app is {id:?}, want {key:?}"
                ));
            }
        }
    } else if from_app {
        // The signature verifies but the vector names no delivery ID: either a handshake the
        // sidecar forwards without a claim (Slack's url_verification) ...
        if arrivals.len() != 1 {
            problems.push(format!(
                "the app saw it {} time(s), want once",
                arrivals.len()
            ));
        }
        for arrival in arrivals {
            if let Some(id) = arrival.headers.get(HEADER_DELIVERY_ID) {
                problems.push(format!(
                    "the vector has no dedup_key, but the app got {HEADER_DELIVERY_ID} {id:?}"
                ));
            }
        }
    } else {
        // ... or a delivery refused for want of an ID: 400, and only after the signature
        // passed (the reason says so).
        let no_id = reasons.is_some_and(|r| {
            r.iter()
                .any(|r| r == "missing_delivery_id" || r == "invalid_delivery_id")
        });
        if answer.status != 400 || !no_id {
            problems.push(format!(
                "valid without a dedup_key: expected the app's 200 or a 400 for the missing \
                 delivery ID, got {}",
                describe(answer, reasons)
            ));
        }
        if !arrivals.is_empty() {
            problems.push(format!("the app saw it {} time(s)", arrivals.len()));
        }
    }
    problems
}

/// What is wrong with the answer to a vector sent to one of its endpoints.
fn check(
    send: &Send<'_>,
    answer: &Answer,
    arrivals: &[Arrival],
    reasons: Option<&Vec<String>>,
) -> Vec<String> {
    let vector = send.vector;
    match (send.role, vector.expect) {
        (Role::Plain | Role::Subscribed, Expect::Valid) => {
            check_valid(vector, answer, arrivals, reasons)
        }
        (Role::Unsubscribed, _) => {
            let mut problems = Vec::new();
            if answer.status != 200 || answer.outcome.as_deref() != Some("filtered") {
                problems.push(format!(
                    "expected 200 filtered, got {}",
                    describe(answer, reasons)
                ));
            }
            if !arrivals.is_empty() {
                problems.push(format!("the app saw it {} time(s)", arrivals.len()));
            }
            problems
        }
        (_, Expect::Invalid) => {
            let mut problems = Vec::new();
            let ok = vector.expect_status.map_or_else(
                || category_allows(&vector.category, answer.status),
                |want| answer.status == want,
            );
            if !ok {
                let want = vector.expect_status.map_or_else(
                    || format!("the status of category {:?}", vector.category),
                    |s| s.to_string(),
                );
                problems.push(format!(
                    "expected {want}, got {}",
                    describe(answer, reasons)
                ));
            }
            if !arrivals.is_empty() {
                problems.push(format!("the app saw it {} time(s)", arrivals.len()));
            }
            problems
        }
    }
}

/// The endpoints of a file: one per vector (two more for the filter), one per sequence.
fn plan<'a>(
    file: &'a VectorFile,
    scheme: &'static str,
    now_unix: i64,
    report: &mut FileReport,
) -> (Vec<Send<'a>>, Vec<Sequence<'a>>) {
    let mut sends = Vec::new();
    let mut usable: BTreeMap<&str, &Vector> = BTreeMap::new();
    for (i, vector) in file.vectors.iter().enumerate() {
        match vector.expect {
            Expect::Valid => report.valid += 1,
            Expect::Invalid => report.invalid += 1,
        }
        if vector.now_unix != now_unix {
            report.fail(
                &vector.id,
                format!(
                    "now_unix {} differs from the file's {now_unix}; one sidecar has one clock",
                    vector.now_unix
                ),
            );
            continue;
        }
        if vector.keys().is_empty() {
            report.fail(&vector.id, "no secret, public_key or other_keys");
            continue;
        }
        if vectors::signs_public_url(scheme) && vector.url.is_none() {
            report.fail(&vector.id, format!("{scheme} signs the URL, but no url"));
            continue;
        }
        if let Err(err) = vector.body() {
            report.fail(&vector.id, format!("{err:#}"));
            continue;
        }
        usable.insert(&vector.id, vector);
        let endpoint = VectorEndpoint::for_vector(format!("v{i}"), scheme, vector);
        // Generic has no event type unless `generic.eventTypeHeader` names one, which no
        // vector does.
        if let (Expect::Valid, Some(event_type), false) =
            (vector.expect, &vector.event_type, scheme == "Generic")
        {
            report.filter_checks += 1;
            let mut subscribed = endpoint.clone();
            subscribed.name = format!("v{i}-sub");
            subscribed.event_types = vec![event_type.clone()];
            sends.push(Send {
                vector,
                endpoint: subscribed,
                role: Role::Subscribed,
            });
            // Whether a handshake the sidecar answers itself is filtered is not part of the
            // contract: left out.
            if vector.expect_response.is_none() {
                let mut unsubscribed = endpoint.clone();
                unsubscribed.name = format!("v{i}-unsub");
                unsubscribed.event_types = vec![UNSUBSCRIBED_EVENT_TYPE.to_owned()];
                sends.push(Send {
                    vector,
                    endpoint: unsubscribed,
                    role: Role::Unsubscribed,
                });
            }
        }
        sends.push(Send {
            vector,
            endpoint,
            role: Role::Plain,
        });
    }

    let mut sequences = Vec::new();
    for (j, DedupSequence { description, steps }) in file.dedup_sequences.iter().enumerate() {
        report.sequences += 1;
        let label = format!("{} dedup sequence {description:?}", file.scheme);
        let mut found = Vec::new();
        for step in steps {
            match usable.get(step.vector.as_str()) {
                Some(vector) => found.push((*vector, step.expect_action)),
                None => report.fail_other(
                    &label,
                    format!("step {:?} is no usable vector of the file", step.vector),
                ),
            }
        }
        let Some((first, _)) = found.first() else {
            report.fail_other(&label, "no steps");
            continue;
        };
        if found.len() != steps.len() {
            continue;
        }
        let mut endpoint = VectorEndpoint::for_vector(format!("seq{j}"), scheme, first);
        // The receiver holds every key of its vectors (normally the same ones).
        for (vector, _) in &found {
            for key in vector.keys() {
                if !endpoint.keys.contains(&key) {
                    endpoint.keys.push(key);
                }
            }
        }
        sequences.push(Sequence {
            description,
            endpoint,
            steps: found,
        });
    }
    (sends, sequences)
}

/// Runs one vector file through its own sidecar and app.
async fn run_file(found: &FoundFile, binary: &Path, libfaketime: &Path) -> FileReport {
    let mut report = FileReport {
        label: found.label(),
        ..FileReport::default()
    };
    let file = match &found.file {
        Ok(file) => file,
        Err(err) => {
            report.fail_other(&report.label.clone(), format!("{err:#}"));
            return report;
        }
    };
    let Some(scheme) = config_scheme(&file.scheme) else {
        report.fail_other(
            &report.label.clone(),
            format!("unknown scheme {:?}", file.scheme),
        );
        return report;
    };
    report.scheme = Some(scheme);
    let Some(now_unix) = file.vectors.first().map(|v| v.now_unix) else {
        report.fail_other(&report.label.clone(), "no vectors");
        return report;
    };
    let (sends, sequences) = plan(file, scheme, now_unix, &mut report);

    let app = TestApp::ok().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let endpoints: Vec<VectorEndpoint> = sends
        .iter()
        .map(|s| s.endpoint.clone())
        .chain(sequences.iter().map(|s| s.endpoint.clone()))
        .chain([VectorEndpoint::clock_probe()])
        .collect();
    let config_dir = vectors::write_endpoints(dir.path(), &endpoints, app.port()).unwrap();
    let sidecar = match FrozenSidecar::start(
        binary,
        libfaketime,
        &config_dir,
        now_unix,
        &dir.path().join("sidecar.log"),
    )
    .await
    {
        Ok(sidecar) => sidecar,
        Err(err) => {
            for send in &sends {
                report.failed.insert(send.vector.id.clone());
            }
            report.fail_other(
                &report.label.clone(),
                format!("the sidecar did not start on this file's endpoints: {err:#}"),
            );
            return report;
        }
    };

    let ready = Instant::now();
    // A clock that is not where the vectors need it fails them all for one reason: say it once.
    if let Err(err) = sidecar.check_clock().await {
        for send in &sends {
            report.failed.insert(send.vector.id.clone());
        }
        report.fail_other(&report.label.clone(), format!("{err:#}"));
        return report;
    }

    // Every vector at once; each sequence's steps in order, the sequences at once.
    let singles = join_all(sends.iter().map(|send| async {
        let body = send.vector.body().unwrap_or_default();
        sidecar
            .post(
                &send.endpoint.target(send.vector),
                &send.vector.headers,
                body,
            )
            .await
    }));
    let sequences_run = join_all(sequences.iter().map(|sequence| async {
        let mut problems = Vec::new();
        let mut seen = 0;
        for (n, (vector, action)) in sequence.steps.iter().enumerate() {
            let answer = match sidecar
                .post(
                    &sequence.endpoint.target(vector),
                    &vector.headers,
                    vector.body().unwrap_or_default(),
                )
                .await
            {
                Ok(answer) => answer,
                Err(err) => {
                    problems.push(format!("step {} ({}): {err:#}", n + 1, vector.id));
                    break;
                }
            };
            let now_seen = arrivals_at(&app, &sequence.endpoint.name).len();
            let ok = match action {
                Action::Forward => {
                    answer.status == 200
                        && answer.outcome.is_none()
                        && answer.body == APP_BODY
                        && now_seen == seen + 1
                }
                Action::Duplicate => {
                    answer.status == 200
                        && answer.outcome.as_deref() == Some("duplicate")
                        && now_seen == seen
                }
            };
            if !ok {
                problems.push(format!(
                    "step {} ({}, expect {action:?}): got {}, the app saw {} more",
                    n + 1,
                    vector.id,
                    describe(&answer, None),
                    now_seen.saturating_sub(seen)
                ));
            }
            seen = now_seen;
        }
        problems
    }));
    let (answers, sequence_problems) = tokio::join!(singles, sequences_run);

    let reasons = sidecar.rejection_reasons().await.unwrap_or_default();
    for (send, answer) in sends.iter().zip(&answers) {
        let id = format!("{}{}", send.vector.id, send.role.label());
        match answer {
            Ok(answer) => {
                let arrivals = arrivals_at(&app, &send.endpoint.name);
                let reasons = reasons.get(&send.endpoint.name);
                for problem in check(send, answer, &arrivals, reasons) {
                    report.fail_vector(&send.vector.id, &id, problem);
                }
            }
            Err(err) => {
                report.fail_vector(&send.vector.id, &id, format!("request failed: {err:#}"));
            }
        }
    }
    for (sequence, problems) in sequences.iter().zip(sequence_problems) {
        let label = format!("{} dedup sequence {:?}", file.scheme, sequence.description);
        for problem in problems {
            report.fail_other(&label, problem);
        }
    }

    // Still stopped a while after the start: a clock merely started at now_unix has moved on.
    tokio::time::sleep(CLOCK_CHECK_AFTER.saturating_sub(ready.elapsed())).await;
    if let Err(err) = sidecar.check_clock().await {
        report.fail_other(&report.label.clone(), format!("{err:#}"));
    }
    if !report.failures.is_empty() {
        report.log = Some(sidecar.log_text());
    }
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn every_vector_through_the_real_sidecar() {
    let libfaketime = vectors::libfaketime().unwrap_or_else(|err| panic!("{err:#}"));
    let binary = vectors::sidecar_binary().unwrap_or_else(|err| panic!("{err:#}"));
    let files = vectors::vector_files().unwrap_or_else(|err| panic!("{err:#}"));
    let started = Instant::now();

    let reports = join_all(
        files
            .iter()
            .map(|found| run_file(found, &binary, &libfaketime)),
    )
    .await;

    let mut failures = Vec::new();
    let mut found: BTreeSet<&str> = BTreeSet::new();
    for report in &reports {
        println!(
            "{}: {} vectors ({} valid, {} invalid), {} with the event-type filter, {} dedup \
             sequences; {} vectors failed",
            report.label,
            report.valid + report.invalid,
            report.valid,
            report.invalid,
            report.filter_checks,
            report.sequences,
            report.failed.len()
        );
        found.extend(report.scheme);
        failures.extend(report.failures.iter().cloned());
    }
    for report in &reports {
        if let Some(log) = &report.log {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            println!(
                "--- {}: the sidecar's log (last {} lines) ---\n{}",
                report.label,
                tail.len(),
                tail.join("\n")
            );
        }
    }
    let missing: Vec<&str> = Scheme::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !found.contains(s))
        .collect();
    if !missing.is_empty() {
        failures.push(format!(
            "no vector file in {} or {} for {missing:?}",
            vectors::shared_vectors_dir().display(),
            vectors::repository_vectors_dir().display()
        ));
    }
    println!(
        "{} vector files through the sidecar in {:.1?}",
        reports.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} vector failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
