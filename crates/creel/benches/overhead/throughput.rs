//! Throughput: the stand-in writing as fast as it can, bytes captured per second by creel vs
//! `podman run > file` of the same container, with zero bytes lost (checked byte for byte);
//! then `output` pages at the end of the 1 GB output vs at offset 0.

use std::time::Duration;

use creel_engine::internals::JobSpec;
use creel_engine::{JobState, OutputFormat, OutputRequest};
use serde_json::json;

use crate::query::mcp_times;
use crate::util::{
    Bare, Env, Samples, compare_outputs, fmt_ms, k8s_stdout, time_cmd, time_n, wall_ms,
};
use crate::{Opts, Report, Verdict};

const TIMEOUT: Duration = Duration::from_secs(900);
const PAGE: u64 = 64 * 1024;

pub fn run(o: &Opts, r: &mut Report) {
    let env = Env::new(&o.base, "throughput", "", o.keep);
    let (job, _) = env.start("say warm-up", &[]);
    let spec = env.wait_final(&job, TIMEOUT).spec;

    // Many ordinary stream-json lines (262 bytes each), about 1 GB.
    let lines = (0..o.trials)
        .map(|t| trial(&env, &spec, &format!("lines{t}"), "lines 4000000", true))
        .collect::<Vec<_>>();
    report(r, "`lines 4000000` (1.05 GB of 262-byte lines)", &lines);
    // The big output: lines of 128 MiB, totalling `big_bytes`.
    let line = (128u64 << 20).min(o.big_bytes);
    let n = o.big_bytes.div_ceil(line).max(1);
    let prompt = (0..n)
        .map(|_| format!("bigline {line}"))
        .collect::<Vec<_>>()
        .join("\n");
    let big = (0..o.trials)
        .map(|t| trial(&env, &spec, &format!("big{t}"), &prompt, t + 1 < o.trials))
        .collect::<Vec<_>>();
    report(
        r,
        &format!("`bigline {line}` × {n} ({} MB)", n * line / 1_000_000),
        &big,
    );
    paging(&env, r, &big.last().expect("a trial").job);
}

/// One creel job and its bare twin.
struct Trial {
    job: String,
    bytes: u64,
    creel_ms: f64,
    bare_ms: f64,
    creel_stream_ms: f64,
    bare_stream_ms: f64,
    /// Byte-exact against the bare twin (`Err`: the first difference).
    exact: Result<(), String>,
    /// Byte-exact against the runtime's own log of the creel job (`None`: no log kept).
    vs_log: Option<bool>,
}

impl Trial {
    fn ratio(&self) -> f64 {
        self.bare_ms / self.creel_ms
    }

    fn stream_ratio(&self) -> f64 {
        self.bare_stream_ms / self.creel_stream_ms
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One row per workload: median ratio over the trials, every trial listed.
fn report(r: &mut Report, what: &str, trials: &[Trial]) {
    let ok = trials
        .iter()
        .all(|t| t.exact.is_ok() && t.vs_log != Some(false));
    let lost = if ok {
        format!(
            "0 bytes lost in {} trials (byte-exact vs bare{})",
            trials.len(),
            if trials.iter().all(|t| t.vs_log == Some(true)) {
                " and vs the runtime's log"
            } else {
                ""
            }
        )
    } else {
        trials
            .iter()
            .filter_map(|t| {
                t.exact
                    .as_ref()
                    .err()
                    .map(|e| format!("MISMATCH {}: {e}", t.job))
            })
            .chain(
                trials
                    .iter()
                    .filter(|t| t.vs_log == Some(false))
                    .map(|t| format!("{}: differs from the runtime's log", t.job)),
            )
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rate = |bytes: u64, ms: f64| bytes as f64 / ms / 1000.0;
    let bytes = trials[0].bytes;
    let ratio = median(trials.iter().map(Trial::ratio).collect());
    let each = |f: fn(&Trial) -> f64| {
        trials
            .iter()
            .map(|t| format!("{:.2}", f(t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verdict = |ratio: f64| {
        if ratio >= 0.9 && ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    };
    r.row(
        format!("throughput, {what}: bytes captured/s, start → completed"),
        format!(
            "{:.0} MB/s ({})",
            median(trials.iter().map(|t| rate(bytes, t.creel_ms)).collect()),
            fmt_ms(median(trials.iter().map(|t| t.creel_ms).collect()))
        ),
        format!(
            "{:.0} MB/s ({})",
            median(trials.iter().map(|t| rate(bytes, t.bare_ms)).collect()),
            fmt_ms(median(trials.iter().map(|t| t.bare_ms).collect()))
        ),
        format!(
            "{ratio:.2}× (median; trials {}); {lost}",
            each(Trial::ratio)
        ),
        "≥ 0.9×, 0 lost",
        verdict(ratio),
    );
    let sratio = median(trials.iter().map(Trial::stream_ratio).collect());
    r.row(
        "… streaming only, first → last byte captured",
        format!(
            "{:.0} MB/s",
            median(
                trials
                    .iter()
                    .map(|t| rate(bytes, t.creel_stream_ms))
                    .collect()
            )
        ),
        format!(
            "{:.0} MB/s",
            median(
                trials
                    .iter()
                    .map(|t| rate(bytes, t.bare_stream_ms))
                    .collect()
            )
        ),
        format!(
            "{sratio:.2}× (median; trials {})",
            each(Trial::stream_ratio)
        ),
        "≥ 0.9×",
        verdict(sratio),
    );
}

/// One creel job of `prompt`, then a bare twin as the same Claude conversation (so that the
/// bytes must match); the creel job's files are removed when `cleanup`.
fn trial(env: &Env, spec: &JobSpec, tag: &str, prompt: &str, cleanup: bool) -> Trial {
    let t0 = wall_ms();
    let (job, _) = env.start(prompt, &[]);
    let rec = env.wait_final(&job, TIMEOUT);
    assert_eq!(rec.state, JobState::Completed, "{rec:?}");
    let creel_ms = rec.finished_at_ms.unwrap() as f64 - t0;
    let creel_stream_ms = (rec.last_output_at_ms.unwrap() - rec.first_output_at_ms.unwrap()) as f64;
    let c_out = env.job_dir(&job).join("output.jsonl");
    let bare = Bare::prepare(
        spec,
        &env.root.join(format!("bare-{tag}")),
        tag,
        prompt,
        rec.spec.conversation.id(),
    );
    let b_out = bare.dir.join("stdout");
    let t0 = wall_ms();
    let mut child = bare.attached(&b_out).spawn().expect("podman run");
    // Poll the file every 1 ms for its first and last byte, as the store records creel's.
    let (mut first, mut last, mut size) = (None, 0.0, 0u64);
    let status = loop {
        let now = wall_ms();
        let len = std::fs::metadata(&b_out).map_or(0, |m| m.len());
        if len > size {
            size = len;
            first.get_or_insert(now);
            last = now;
        }
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let bare_ms = wall_ms() - t0;
    assert!(status.success());
    bare.remove();
    if std::fs::metadata(&b_out).unwrap().len() > size {
        last = wall_ms();
    }
    let bare_stream_ms = last - first.unwrap_or(t0);
    let exact = compare_outputs(&c_out, &b_out).map(|_| ());
    // And against the runtime's own log of the creel job, decoded independently.
    let log = env.job_dir(&job).join("container.log");
    let vs_log = log.exists().then(|| {
        let decoded = env.root.join("decoded");
        let n = k8s_stdout(&log, &decoded).expect("decode log");
        let same = n == rec.output_size && files_equal(&decoded, &c_out);
        let _ = std::fs::remove_file(&decoded);
        same
    });
    let _ = std::fs::remove_dir_all(&bare.dir);
    if cleanup {
        let _ = std::fs::remove_dir_all(env.job_dir(&job));
    }
    Trial {
        job,
        bytes: rec.output_size,
        creel_ms,
        bare_ms,
        creel_stream_ms,
        bare_stream_ms,
        exact,
        vs_log,
    }
}

fn files_equal(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    }
}

/// `output` at the end of the big output vs at offset 0.
fn paging(env: &Env, r: &mut Report, job: &str) {
    let engine = env.engine();
    let total = std::fs::metadata(env.job_dir(job).join("output.jsonl"))
        .unwrap()
        .len();
    let end = total - PAGE;
    let req = |offset| OutputRequest {
        offset,
        limit: PAGE,
        format: OutputFormat::Raw,
    };
    let page = engine.output(job, req(end)).unwrap();
    assert_eq!(page.next_offset, total);
    // Interleaved, so that drift in the machine's load hits both offsets alike.
    let (mut at0, mut at_end) = (Samples::default(), Samples::default());
    for i in 0..340 {
        for (offset, s) in [(0, &mut at0), (end, &mut at_end)] {
            let t = std::time::Instant::now();
            engine.output(job, req(offset)).unwrap();
            if i >= 40 {
                s.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let (o0, oe) = ("0".to_string(), end.to_string());
    let cli0 = time_cmd(100, 5, || {
        env.cmd(&["output", job, "--json", "--offset", &o0])
    });
    let clie = time_cmd(100, 5, || {
        env.cmd(&["output", job, "--json", "--offset", &oe])
    });
    let mcp = mcp_times(
        env,
        &[
            ("claude_code_output", json!({"job_id": job, "offset": 0})),
            ("claude_code_output", json!({"job_id": job, "offset": end})),
        ],
        200,
    );
    let status = time_n(300, 20, || {
        engine.status(job).unwrap();
    });
    for (name, a, b) in [
        (
            "output page (64 KiB) at the end of the big output vs at offset 0, in-process",
            &at_end,
            &at0,
        ),
        ("… through the CLI", &clie, &cli0),
        ("… through MCP", &mcp[1], &mcp[0]),
    ] {
        let ratio = a.p50() / b.p50();
        r.row(
            format!("{name} ({total} B)"),
            format!("end {}", a.fmt_ms()),
            format!("offset 0 {}", b.fmt_ms()),
            format!("{ratio:.2}× (end / offset 0)"),
            "as fast as at offset 0",
            if ratio <= 1.2 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        );
    }
    r.row(
        "status of the big-output job, in-process",
        status.fmt_ms(),
        "",
        "",
        "",
        Verdict::Info,
    );
    // The rendered format: the job's monitor rendered the transcript as the output arrived
    // (and finished it before it exited, which `wait_final` waited for); every page, the
    // first included, reads only itself.
    let text_req = |offset| OutputRequest {
        offset,
        limit: PAGE,
        format: OutputFormat::Text,
    };
    let text0 = time_n(1, 0, || {
        engine.output(job, text_req(0)).unwrap();
    });
    let hwm = crate::util::status_kib(std::process::id() as i32, "VmHWM:").unwrap_or(0);
    let first_ratio = text0.p50() / at0.p50();
    r.row(
        "`output --format text`, first page of the big output after it completed, in-process (1 sample)",
        fmt_ms(text0.p50()),
        format!("raw page at offset 0 {}", fmt_ms(at0.p50())),
        format!("{first_ratio:.1}× the raw page"),
        "≤ 5× a raw page",
        if first_ratio <= 5.0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    let text_total = engine.output(job, text_req(0)).unwrap().total_size;
    let text_end = text_total.saturating_sub(PAGE);
    let warm0 = time_n(100, 5, || {
        engine.output(job, text_req(0)).unwrap();
    });
    let warm_end = time_n(100, 5, || {
        engine.output(job, text_req(text_end)).unwrap();
    });
    let ratio = warm_end.p50() / at_end.p50();
    r.row(
        "`output --format text`, later pages: at offset 0 / at the end, in-process",
        format!("{} / {}", fmt_ms(warm0.p50()), fmt_ms(warm_end.p50())),
        format!("raw page at the end {}", fmt_ms(at_end.p50())),
        format!("{ratio:.2}× the raw page"),
        "O(page)",
        if ratio <= 2.0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    r.note(format!(
        "peak RSS of the bench process after the first text page: {} MiB (a reader renders only what the monitor has not)",
        hwm / 1024
    ));
}
