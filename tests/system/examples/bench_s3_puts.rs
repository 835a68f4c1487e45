//! What S3 costs: PUTs (and the other requests) the release `kubescribe-recorder` makes to a real
//! SeaweedFS per 1,000 events, at steady rates, in each storage mode: one PUT per group commit
//! (the default) and batched through a local write-ahead log (`--s3-batch-dir`).
//!
//! Each run starts a fresh SeaweedFS and the recorder as users run it (signing key, storing
//! durably), then sends `rate` events a second for `--secs`, each as its own `POST /v2/event`
//! followed by its response record (as a proxy does with acknowledged delivery: the case where
//! every request may be its own commit). The PUTs counted are the recorder's own
//! (`kubescribe_recorder_object_store_requests_total`, every HTTP request its S3 client sends),
//! from the first event until every record is in the bucket: records, manifests, chains objects.
//! Every acknowledged event is checked to be in the bucket once. The age of an event when it
//! reached S3 is the recorder's `kubescribe_recorder_s3_batch_ship_age_max_seconds` (the batched
//! mode's oldest record per object, at the PUT's completion) and, independently, each record
//! object's Last-Modified (whole seconds) less the time its name says its first record was
//! committed.
//!
//! ```text
//! cargo xtask bench-s3-puts          # builds the release recorder, then runs this
//! cargo run --release -p kubescribe-system-tests --example bench_s3_puts -- \
//!     [--secs 60] [--rates 1,10,100] [--max-age 30s] [--modes per-commit,batched]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kubescribe_system_tests::Error;
use test_support::net::free_port;
use test_support::process::{workspace_bin, Spawned};
use test_support::seaweed::{Seaweed, ACCESS_KEY, SECRET_KEY};

const TOKEN: &str = "bench-s3-puts-token-0123456789";
const USAGE: &str = "--secs N --rates A,B --max-age D --modes per-commit,batched";

struct Options {
    secs: u64,
    rates: Vec<u64>,
    max_age: String,
    modes: Vec<String>,
}

fn options() -> Result<Options, Error> {
    let mut o = Options {
        secs: 60,
        rates: vec![1, 10, 100],
        max_age: "30s".into(),
        modes: vec!["per-commit".into(), "batched".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => o.secs = value.parse().map_err(|e| format!("--secs {value}: {e}"))?,
            "--rates" => {
                o.rates = value
                    .split(',')
                    .map(|r| r.parse().map_err(|e| format!("--rates {r}: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--max-age" => o.max_age = value,
            "--modes" => o.modes = value.split(',').map(str::to_owned).collect(),
            _ => return Err(format!("unknown flag {flag}: {USAGE}").into()),
        }
    }
    Ok(o)
}

fn event(run: u64, n: u64) -> Vec<u8> {
    let name = format!("web-{n}");
    let v = serde_json::json!({
        "type": "kubernetes-api-request", "id": "", "timestamp": 1767225600 + n,
        "userAgent": "kubectl/v1.37.0 (linux/amd64) kubernetes/abcdef0",
        "request": {"method": "GET", "path": format!("/api/v1/namespaces/default/pods/{name}"), "body": "", "queryParameters": {}},
        "kubernetes": {"IsResourceRequest": true, "Path": format!("/api/v1/namespaces/default/pods/{name}"), "Verb": "get",
            "APIPrefix": "api", "APIGroup": "", "APIVersion": "v1", "Namespace": "default", "Resource": "pods",
            "Subresource": "", "Name": name, "Parts": ["pods", name], "FieldSelector": "", "LabelSelector": ""},
        "source": {"node": "alice-laptop.tail1234.ts.net", "nodeID": "nALICE1CNTRL", "nodeUserID": 4242, "nodeUser": "alice@example.com"},
        "destination": {"node": "", "nodeID": ""},
        "kubescribe": {"key": format!("bench-{run}-{n}"), "requestID": format!("bench-{run}-{n}")}
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn response(run: u64, n: u64) -> Vec<u8> {
    let v = serde_json::json!({
        "type": "kubescribe-api-response", "id": "", "key": format!("bench-{run}-{n}"),
        "timestamp": 1767225600 + n, "status": 200, "durationMs": 3.25, "responseBytes": 1432
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A keep-alive HTTP/1.1 client (as a proxy keeps its connections to a recorder open; a new
/// connection per record would run into the recorder's per-source connection rate limit).
type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// POSTs one record; its status.
async fn post(client: &Client, addr: SocketAddr, body: Vec<u8>) -> Result<u16, String> {
    let req = http::Request::post(format!("http://{addr}/v2/event"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    Ok(status)
}

/// The object store's requests so far, by method, from the recorder's metrics.
fn requests(admin: SocketAddr) -> Result<HashMap<&'static str, f64>, Error> {
    let mut out = HashMap::new();
    for method in ["PUT", "POST", "GET", "HEAD", "DELETE"] {
        let name =
            format!("kubescribe_recorder_object_store_requests_total{{method=\"{method}\"}}");
        out.insert(
            method,
            test_support::http::metric(admin, &name)?.unwrap_or(0.0),
        );
    }
    Ok(out)
}

/// When the record object `key` says its first record was committed (its UUIDv7), Unix ms.
fn committed_ms(key: &str) -> Option<i64> {
    let stem = key.rsplit('/').next()?.strip_suffix(".ndjson")?;
    let id = u128::from_str_radix(stem, 16).ok()?;
    i64::try_from(id >> 80).ok()
}

struct Row {
    mode: String,
    rate: u64,
    events: u64,
    secs: f64,
    puts: f64,
    record_objects: usize,
    manifest_objects: usize,
    others: HashMap<&'static str, f64>,
    age_metric: Option<f64>,
    age_listed: f64,
}

fn run_one(options: &Options, mode: &str, rate: u64, run: u64) -> Result<Row, Error> {
    let weed = Seaweed::start("recordings")?;
    let dir = tempfile::Builder::new()
        .prefix("kubescribe-bench-s3-puts-")
        .tempdir()?;
    std::fs::write(dir.path().join("token"), TOKEN)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let path = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let mut args: Vec<String> = vec![
        "--listen".into(),
        addr.to_string(),
        "--admin-listen".into(),
        admin.to_string(),
        "--dst".into(),
        format!("s3://{}", weed.endpoint()),
        "--bucket".into(),
        weed.bucket().into(),
        "--s3-allow-http".into(),
        "--signing-key".into(),
        path("signing.key"),
        "--generate-signing-key".into(),
        "--upload-token-file".into(),
        path("token"),
    ];
    if mode == "batched" {
        args.extend([
            "--s3-batch-dir".into(),
            path("log"),
            "--s3-batch-max-age".into(),
            options.max_age.clone(),
        ]);
    }
    let mut recorder = Spawned::start(
        "kubescribe-recorder",
        &workspace_bin("kubescribe-recorder")?,
        &args,
        &[
            ("RUST_LOG", "warn"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
        dir.path(),
    )?;
    recorder.wait_for_tcp(addr, Duration::from_secs(30))?;
    recorder.wait_for_tcp(admin, Duration::from_secs(30))?;
    let before = requests(admin)?;
    let events = rate * options.secs;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let failed = runtime.block_on(async {
        let client: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut tasks = Vec::with_capacity(events as usize);
        let start = tokio::time::Instant::now();
        for n in 0..events {
            tokio::time::sleep_until(start + interval * n as u32).await;
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let a = post(&client, addr, event(run, n)).await;
                let b = post(&client, addr, response(run, n)).await;
                matches!((a, b), (Ok(200), Ok(200)))
            }));
        }
        let mut failed = 0u64;
        for t in tasks {
            if !matches!(t.await, Ok(true)) {
                failed += 1;
            }
        }
        failed
    });
    if failed > 0 {
        return Err(format!("{mode} at {rate}/s: {failed} events not acknowledged").into());
    }
    // Until every record is in the bucket (the batched mode ships within its age).
    let deadline = Instant::now() + Duration::from_secs(120);
    let lines = |prefix: &str| -> Result<usize, Error> {
        Ok(weed
            .read_all(prefix)?
            .iter()
            .map(|(_, d)| d.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count())
            .sum())
    };
    loop {
        if lines("events")? as u64 == events && lines("responses")? as u64 == events {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{mode} at {rate}/s: records missing from the bucket").into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let secs = started.elapsed().as_secs_f64();
    let after = requests(admin)?;
    let age_metric =
        test_support::http::metric(admin, "kubescribe_recorder_s3_batch_ship_age_max_seconds")?;
    let _ = recorder.kill();
    let mut record_objects = 0;
    let mut age_listed = 0.0f64;
    for prefix in ["events", "responses"] {
        for (key, modified) in weed.list_modified(prefix)? {
            record_objects += 1;
            if let Some(ms) = committed_ms(&key) {
                age_listed = age_listed.max((modified - ms) as f64 / 1000.0);
            }
        }
    }
    let manifest_objects = weed.list("_kubescribe/manifests")?.len();
    let delta =
        |m: &str| after.get(m).copied().unwrap_or(0.0) - before.get(m).copied().unwrap_or(0.0);
    let others = ["POST", "GET", "HEAD", "DELETE"]
        .into_iter()
        .map(|m| (m, delta(m)))
        .collect();
    Ok(Row {
        mode: mode.into(),
        rate,
        events,
        secs,
        puts: delta("PUT"),
        record_objects,
        manifest_objects,
        others,
        age_metric,
        age_listed,
    })
}

fn main() -> Result<(), Error> {
    let options = options()?;
    let mut rows = Vec::new();
    let mut run = 0;
    for mode in &options.modes {
        for &rate in &options.rates {
            run += 1;
            eprintln!("{mode} at {rate} events/s for {} s …", options.secs);
            let row = run_one(&options, mode, rate, run)?;
            eprintln!(
                "  {} PUTs for {} events ({:.1} per 1,000)",
                row.puts,
                row.events,
                row.puts * 1000.0 / row.events as f64
            );
            rows.push(row);
        }
    }
    println!(
        "## PUTs per 1,000 events on S3 (SeaweedFS), {} s per run, each event and its response record one POST each; batched: --s3-batch-max-age {}\n",
        options.secs, options.max_age
    );
    println!("| mode | events/s | events | PUTs | PUTs per 1,000 events | PUTs per 5 s | record objects | manifest objects | other requests (POST/GET/HEAD/DELETE) | max age at S3 (metric) | max age at S3 (Last-Modified, s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.2} | {} | {} | {:.0}/{:.0}/{:.0}/{:.0} | {} | {:.0} |",
            r.mode,
            r.rate,
            r.events,
            r.puts,
            r.puts * 1000.0 / r.events as f64,
            r.puts * 5.0 / r.secs,
            r.record_objects,
            r.manifest_objects,
            r.others.get("POST").copied().unwrap_or(0.0),
            r.others.get("GET").copied().unwrap_or(0.0),
            r.others.get("HEAD").copied().unwrap_or(0.0),
            r.others.get("DELETE").copied().unwrap_or(0.0),
            r.age_metric
                .map_or_else(|| "–".to_owned(), |s| format!("{s:.2} s")),
            r.age_listed,
        );
    }
    Ok(())
}
