//! The container's hardening, seen from inside by the agent, and `creel doctor`.

use crate::util::TestEnv;

#[test]
fn hardening_is_in_force_inside_the_container() {
    let env = TestEnv::with_config("pids_limit = 77\n");
    let probe = "bash grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; id -u; id -g; \
                 touch /tmp/t && echo TMP-WRITABLE; \
                 grep ' /tmp ' /proc/mounts; echo ROOTMOUNT $(awk '$2 == \"/\" {print $4}' /proc/mounts); ulimit -n; \
                 echo PIDSMAX $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)";
    let (job, _) = env.start(probe, &[]);
    let s = env.wait(&job);
    assert_eq!(s["status"], "completed", "{s}");
    let raw = String::from_utf8(env.raw_output(&job)).unwrap();
    let result = raw
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v["tool_use_result"]["stdout"]
                .as_str()
                .map(String::from)
                .or_else(|| {
                    v["message"]["content"][0]["content"]
                        .as_str()
                        .filter(|c| c.contains("CapEff"))
                        .map(String::from)
                })
        })
        .unwrap_or_else(|| panic!("no tool result in {raw}"));
    assert!(result.contains("CapEff:\t0000000000000000"), "{result}");
    assert!(result.contains("CapBnd:\t0000000000000000"), "{result}");
    assert!(result.contains("NoNewPrivs:\t1"), "{result}");
    // The root file system is mounted read-only (a failed write as a non-root uid would not
    // show it: a writable root is still not writable by uid 1000).
    let root_opts = result
        .lines()
        .filter_map(|l| l.strip_prefix("ROOTMOUNT "))
        .next_back()
        .unwrap_or_else(|| panic!("no root mount line: {result}"));
    assert!(
        root_opts.split(',').next() == Some("ro"),
        "root not read-only: {root_opts}"
    );
    assert!(result.contains("TMP-WRITABLE"), "{result}");
    assert!(result.contains("nosuid"), "{result}");
    assert!(
        result.lines().any(|l| l.trim() == "PIDSMAX 77"),
        "pids limit not in force: {result}"
    );
    let uid_line = result
        .lines()
        .find(|l| l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty())
        .unwrap();
    assert_ne!(uid_line, "0", "the agent must not run as root: {result}");
}

#[test]
fn doctor_reports_host_findings() {
    let env = TestEnv::new();
    let out = env.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for check in [
        "config",
        "api",
        "runtime",
        "oci runtime",
        "cgroups",
        "rlimits",
        "resource limits",
        "image",
        "login",
    ] {
        assert!(text.contains(check), "{check} missing:\n{text}");
    }
    env.expect_code(&out, 0, &["doctor"]);
    let v = env.json(&["doctor", "--json"]);
    let list = v.as_array().unwrap();
    let oci = list.iter().find(|f| f["check"] == "oci runtime").unwrap();
    // On this host (hybrid cgroups, runc installed) creel picks runc itself.
    if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
        assert!(
            oci["message"].as_str().unwrap().starts_with("runc"),
            "{oci}"
        );
    }
    // It names the config file it read, and where API requests go.
    assert!(
        text.contains(&format!("`{}`", env.config.display())),
        "{text}"
    );
    assert!(
        text.contains("Anthropic's API (https://api.anthropic.com)"),
        "{text}"
    );
    // A local stand-in upstream, and no key: doctor says what the stand-in needs.
    let mut stand_in = TestEnv::with_config("api_base_url = \"http://127.0.0.1:8765\"\n");
    stand_in.unset_env("ANTHROPIC_API_KEY");
    let out = stand_in.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("`http://127.0.0.1:8765` on this host")
            && text.contains("export ANTHROPIC_API_KEY=stand-in"),
        "{text}"
    );
    let env = TestEnv::with_config("image = \"localhost/creel-missing:0\"\n");
    let out = env.run(&["doctor"]);
    env.expect_code(&out, 3, &["doctor"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERROR image"));
}
