//! The Prometheus and Grafana files under deploy/ are valid and agree with what
//! synguard exports. No root needed; needs `promtool` (Debian package `prometheus`,
//! installed by tests/run-all.sh). A missing promtool fails the test, it never
//! skips.
//!
//! - prometheus.yml: `promtool check config` (also loads alerts.yml);
//! - alerts.yml: `promtool check rules`, and every alert has a severity, summary,
//!   description and `for:`; every metric it names is exported;
//! - alerts_test.yml: `promtool test rules` (each alert firing and not firing), and it
//!   covers every alert;
//! - grafana/synguard.json: valid JSON, an importable dashboard (templated Prometheus
//!   datasource), every query is valid PromQL (checked by promtool as recording
//!   rules) naming only exported metrics, and every exported family is on it;
//! - the exported-family list of tests/common agrees with the strings in src/.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// The alerts deploy/prometheus/alerts.yml must define, with their severity.
const ALERTS: &[(&str, &str)] = &[
    ("SynFloodInProgress", "warning"),
    ("SynCookieModeActive", "warning"),
    ("HalfOpenQueueNearFull", "warning"),
    ("FlowTableNearFull", "critical"),
    ("BackendHandshakesFailing", "critical"),
    ("BackendDown", "critical"),
    ("CloseWaitPilingUp", "warning"),
    ("KernelDrops", "warning"),
    ("GatewayDown", "critical"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn promtool_ok(args: &[&str]) -> String {
    let (ok, out) = promtool(args, None);
    assert!(ok, "`promtool {}` failed:\n{out}", args.join(" "));
    println!("promtool {}:\n{out}", args.join(" "));
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn promtool_check_config() {
    let out = promtool_ok(&[
        "check",
        "config",
        path_str(&deploy("prometheus/prometheus.yml")),
    ]);
    assert!(
        out.contains("1 rule files found"),
        "prometheus.yml should load exactly alerts.yml:\n{out}"
    );
    let text = read(&deploy("prometheus/prometheus.yml"));
    assert!(
        text.contains("job_name: synguard") && text.contains(METRICS_ADDR),
        "prometheus.yml should scrape job `synguard` at {METRICS_ADDR} (synguard's default)"
    );
}

#[test]
fn promtool_check_rules() {
    let out = promtool_ok(&["check", "rules", path_str(&deploy("prometheus/alerts.yml"))]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "expected {} rules:\n{out}",
        ALERTS.len()
    );
}

#[test]
fn promtool_test_rules() {
    let out = promtool_ok(&[
        "test",
        "rules",
        path_str(&deploy("prometheus/alerts_test.yml")),
    ]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// `- alert: NAME` blocks of alerts.yml: name -> block text.
fn alert_blocks(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            if let Some((n, b)) = current.take() {
                out.insert(n, b);
            }
            current = Some((name.trim().to_owned(), String::new()));
        } else if t.starts_with('#') || t.starts_with("- name:") {
            // comments belong to the next rule; a new group ends the rule
            if t.starts_with("- name:") {
                if let Some((n, b)) = current.take() {
                    out.insert(n, b);
                }
            }
        } else if let Some((_, b)) = current.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    if let Some((n, b)) = current {
        out.insert(n, b);
    }
    out
}

#[test]
fn alert_rules_complete_and_name_exported_metrics() {
    let text = read(&deploy("prometheus/alerts.yml"));
    let blocks = alert_blocks(&text);
    let names: BTreeSet<&str> = blocks.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = ALERTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "alerts in alerts.yml");
    for (name, severity) in ALERTS {
        let b = &blocks[*name];
        for key in [
            "expr:",
            "for:",
            "labels:",
            "annotations:",
            "summary:",
            "description:",
        ] {
            assert!(
                b.lines().any(|l| l.trim_start().starts_with(key)),
                "alert {name} has no `{key}`:\n{b}"
            );
        }
        assert!(
            b.contains(&format!("severity: {severity}")),
            "alert {name} should have severity {severity}:\n{b}"
        );
    }
    let unknown: Vec<String> = synguard_names_in(&text)
        .into_iter()
        .filter(|n| !is_exported_series(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "alerts.yml names metrics synguard does not export: {unknown:?}"
    );
}

#[test]
fn alert_unit_tests_cover_every_alert() {
    let text = read(&deploy("prometheus/alerts_test.yml"));
    assert!(
        text.contains("- alerts.yml"),
        "alerts_test.yml must load alerts.yml"
    );
    let lines: Vec<&str> = text.lines().collect();
    for (name, _) in ALERTS {
        // every `alertname: NAME` test case, and whether it expects alerts
        let mut firing = 0;
        let mut quiet = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.trim() != format!("alertname: {name}") {
                continue;
            }
            match lines.get(i + 1).map(|n| n.trim()) {
                Some("exp_alerts: []") => quiet += 1,
                Some("exp_alerts:") => firing += 1,
                other => panic!("alerts_test.yml: `alertname: {name}` followed by {other:?}"),
            }
        }
        assert!(
            firing >= 1 && quiet >= 1,
            "alerts_test.yml must test {name} firing and not firing (has {firing} firing, \
             {quiet} quiet cases)"
        );
    }
}

// ---------------------------------------------------------------------------------
// Grafana dashboard.

/// Every panel, rows' nested panels included.
fn all_panels(dash: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in dash.get("panels").expect("dashboard has panels").as_array() {
        out.push(p);
        if let Some(nested) = p.get("panels") {
            out.extend(nested.as_array());
        }
    }
    out
}

/// Every value of a `datasource` member anywhere in the document.
fn datasources<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
    match v {
        Json::Obj(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push(x);
                }
                datasources(x, out);
            }
        }
        Json::Arr(a) => a.iter().for_each(|x| datasources(x, out)),
        _ => {}
    }
}

/// A JSON string literal (also a valid YAML double-quoted scalar).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Grafana variables the dashboard's queries may use, and what PromQL checking
/// substitutes for them.
const DASHBOARD_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("${instance:regex}", ".*"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
];

#[test]
fn grafana_dashboard_is_valid_and_uses_exported_metrics() {
    let path = deploy("grafana/synguard.json");
    let dash = Json::parse(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert_eq!(dash.get("title").and_then(Json::as_str), Some("synguard"));
    assert!(
        dash.get("uid")
            .and_then(Json::as_str)
            .is_some_and(|u| !u.is_empty()),
        "dashboard needs a fixed uid (stable links across imports)"
    );
    // Importable as is: no database id, and the datasource is a template variable.
    assert!(
        matches!(dash.get("id"), None | Some(Json::Null)),
        "dashboard `id` must be null for import"
    );
    let vars = dash
        .at(&["templating", "list"])
        .expect("templating.list")
        .as_array();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v.get("name").and_then(Json::as_str) == Some(name))
            .unwrap_or_else(|| panic!("template variable `{name}` missing"))
    };
    let ds = var("datasource");
    assert_eq!(ds.get("type").and_then(Json::as_str), Some("datasource"));
    assert_eq!(ds.get("query").and_then(Json::as_str), Some("prometheus"));
    let inst = var("instance");
    assert_eq!(
        inst.at(&["datasource", "uid"]).and_then(Json::as_str),
        Some("${datasource}")
    );
    let mut dss = Vec::new();
    datasources(&dash, &mut dss);
    for d in dss {
        let uid = d.get("uid").and_then(Json::as_str);
        let ty = d.get("type").and_then(Json::as_str);
        assert!(
            (ty == Some("prometheus") && uid == Some("${datasource}"))
                || (ty == Some("grafana") && uid == Some("-- Grafana --")),
            "every datasource must be the templated Prometheus one, found {d:?}"
        );
    }

    let panels = all_panels(&dash);
    let mut ids = BTreeSet::new();
    let mut exprs: Vec<(String, String)> = Vec::new(); // (panel/refId, expr)
    for p in &panels {
        let id = p.get("id").and_then(Json::as_f64).expect("panel id") as i64;
        assert!(ids.insert(id), "duplicate panel id {id}");
        let title = p.get("title").and_then(Json::as_str).unwrap_or("");
        assert!(!title.is_empty(), "panel {id} has no title");
        let g = |k: &str| p.at(&["gridPos", k]).and_then(Json::as_f64).unwrap_or(-1.0);
        assert!(
            g("w") >= 1.0 && g("x") >= 0.0 && g("x") + g("w") <= 24.0 && g("h") >= 1.0,
            "panel {title:?}: bad gridPos"
        );
        if p.get("type").and_then(Json::as_str) == Some("row") {
            continue;
        }
        let targets = p.get("targets").map(Json::as_array).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no queries");
        for t in targets {
            let expr = t.get("expr").and_then(Json::as_str).unwrap_or("");
            let refid = t.get("refId").and_then(Json::as_str).unwrap_or("?");
            assert!(
                !expr.trim().is_empty(),
                "panel {title:?} {refid}: empty expr"
            );
            exprs.push((format!("panel {id} {title:?} {refid}"), expr.to_owned()));
        }
    }
    println!(
        "dashboard: {} panels, {} queries",
        panels.len(),
        exprs.len()
    );

    // Only exported metric names, and every exported family shown somewhere.
    let mut used = BTreeSet::new();
    for (what, expr) in &exprs {
        for n in synguard_names_in(expr) {
            assert!(
                is_exported_series(&n),
                "{what}: `{n}` is not a metric synguard exports (expr: {expr})"
            );
            used.insert(n);
        }
    }
    for f in EXPORTED_FAMILIES {
        let shown = used.iter().any(|u| {
            u == f.name
                || (f.kind == "histogram" && u.starts_with(f.name) && u.len() > f.name.len())
        });
        assert!(shown, "exported family {} is on no dashboard panel", f.name);
    }
    for q in ["0.5", "0.99"] {
        assert!(
            exprs.iter().any(|(_, e)| e.contains(&format!(
                "histogram_quantile({q}, sum by (le) (rate(synguard_backend_handshake_duration_seconds_bucket"
            ))),
            "no p{} backend handshake latency panel",
            q.trim_start_matches("0.")
        );
    }

    // Valid PromQL: promtool parses every query as a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (what, expr)) in exprs.iter().enumerate() {
        let mut e = expr.clone();
        for (var, val) in DASHBOARD_VARIABLES {
            e = e.replace(var, val);
        }
        assert!(
            !e.contains('$'),
            "{what}: unknown Grafana variable in {expr}"
        );
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            quoted(&e)
        ));
    }
    let dir = std::env::temp_dir().join(format!("synguard-dashboard-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard_rules.yml");
    fs::write(&file, &rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", path_str(&file)], None);
    let _ = fs::remove_dir_all(&dir);
    assert!(
        ok,
        "dashboard queries are not valid PromQL:\n{out}\n{rules}"
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------
// The exported list against the source.

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn exported_families_match_the_source() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut in_src = BTreeSet::new();
    for f in &files {
        let text = read(f);
        // string literals that start with a synguard_ name
        for (i, _) in text.match_indices("\"synguard_") {
            if let Some(n) = synguard_names_in(&text[i + 1..]).into_iter().next() {
                in_src.insert(n);
            }
        }
    }
    let stray: Vec<&String> = in_src.iter().filter(|n| !is_exported_series(n)).collect();
    assert!(
        stray.is_empty(),
        "src/ names metrics missing from EXPORTED_FAMILIES in tests/common (add them, then \
         to the dashboard and README): {stray:?}"
    );
    let mut missing = Vec::new();
    for f in EXPORTED_FAMILIES {
        if in_src.contains(f.name) {
            assert!(
                !PENDING_FAMILIES.contains(&f.name),
                "{} is in src/ now: remove it from PENDING_FAMILIES in tests/common",
                f.name
            );
        } else if PENDING_FAMILIES.contains(&f.name) {
            println!(
                "NOTE: {} is not in src/ yet (listed in PENDING_FAMILIES)",
                f.name
            );
        } else {
            missing.push(f.name);
        }
    }
    assert!(
        missing.is_empty(),
        "EXPORTED_FAMILIES lists families that src/ does not define: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------
// Self-tests of the helpers in tests/common used above.

#[test]
fn json_parser_parses_and_rejects() {
    let v = Json::parse(r#" {"a": [1, -2.5e1, true, null, "x\"\u00e9\ud83d\ude00"], "b": {}} "#)
        .unwrap();
    let a = v.get("a").unwrap().as_array();
    assert_eq!(a[1].as_f64(), Some(-25.0));
    assert_eq!(a[4].as_str(), Some("x\"é😀"));
    for bad in ["{", "[1,]", "01", "\"a", "{\"a\" 1}", "1 2", "[\"\u{1}\"]"] {
        assert!(Json::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn finds_synguard_names() {
    assert_eq!(
        synguard_names_in(
            "sum(rate(synguard_a_total{x=\"y\"}[1m])) / on(i) synguard_b:c + not_synguard_d"
        ),
        vec!["synguard_a_total", "synguard_b:c"]
    );
    assert!(is_exported_series(
        "synguard_backend_handshake_duration_seconds_bucket"
    ));
    assert!(!is_exported_series("synguard_syn_received"));
    assert!(!is_exported_series("synguard_flows_bucket"));
    assert_eq!(
        url_encode("a b{x=\"1\"}[5s]"),
        "a%20b%7Bx%3D%221%22%7D%5B5s%5D"
    );
}

/// The fleet example: it loads the same alerts, and names every instance in the
/// scrape configuration (the dashboard and the alerts group by that label).
#[test]
fn promtool_check_fleet_config() {
    let path = deploy("fleet/prometheus.yml");
    let out = promtool_ok(&["check", "config", path_str(&path)]);
    assert!(out.contains("1 rule files found"), "{out}");
    let text = read(&path);
    for n in 1..=3 {
        assert!(
            text.contains(&format!("instance: gw{n}")),
            "fleet prometheus.yml names gw{n}"
        );
        let gw = read(&deploy(&format!("fleet/gw{n}.toml")));
        let listen = gw
            .lines()
            .find_map(|l| l.strip_prefix("listen = \""))
            .and_then(|l| l.split('"').next())
            .unwrap_or_else(|| panic!("gw{n}.toml has no metrics listen"));
        assert!(
            text.contains(&format!("[{listen}]")),
            "fleet prometheus.yml scrapes gw{n} at {listen}"
        );
    }
}
