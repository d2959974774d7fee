use super::*;

#[test]
fn values_are_escaped() {
    assert_eq!(
        escape("<script>alert('x')</script> & \"q\""),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
    );
    let row = row_html(&json!({
        "name": "web", "state": "failed", "message": "<script>bad()</script>",
        "release": 1, "ref": "v1", "commit": "abc", "uptime_s": 3, "restarts": 0,
        "cpu_percent": 0.0, "memory_bytes": 0, "url": "javascript:alert(1)"
    }));
    assert!(!row.contains("<script>"), "{row}");
    let chart = sparkline(&json!([
        {"minutes_ago": 2, "requests_per_second": 0.0},
        {"minutes_ago": 1, "requests_per_second": 5.0},
        {"minutes_ago": 0, "requests_per_second": 10.0},
    ]));
    assert!(
        chart.contains("points=\"104.0,22.0 112.0,12.0 120.0,2.0\""),
        "{chart}"
    );
    assert_eq!(sparkline(&json!([])), "");
    assert!(!row.contains("href=\"javascript"), "{row}");
    assert!(!row.contains("out of memory"), "{row}");
    let killed = row_html(&json!({"name": "hog", "state": "failed", "oom_killed": true}));
    assert!(killed.contains(">out of memory</span>"), "{killed}");
}

#[test]
fn a_failed_deploy_leads_with_its_step_and_reason_escaped_and_shortened() {
    let reason = format!(
        "GET /health returned HTTP 500: <b>model</b> {}",
        "x".repeat(200)
    );
    let dep = json!({
        "name": "web", "state": "healthy", "release": 1, "ref": "v1", "commit": "abc",
        "uptime_s": 3, "restarts": 1, "cpu_percent": 0.0, "memory_bytes": 0, "url": "",
        "message": "<i>why</i>",
        "last_event": "restarted: the app exited with code 1", "last_event_at": 1,
        "adopted_at": 2,
        "last_deploy": {"ok": false, "total_ms": 3100, "failed_step": "health",
            "reason": reason,
            "steps": [{"step": "resolve", "result": "ok", "ms": 4},
                      {"step": "health", "result": "failed", "ms": 3000}]},
    });
    let row = row_html(&dep);
    assert!(
        row.contains(">✗ health: GET /health returned HTTP 500: &lt;b&gt;model&lt;/b&gt; x"),
        "{row}"
    );
    assert!(row.contains("… (failed in 3.1 s)</td>"), "{row}");
    // All of it in the title, with the steps.
    assert!(row.contains(&"x".repeat(200)), "{row}");
    assert!(row.contains("steps: resolve 4 ms, health 3.0 s ✗"), "{row}");
    assert!(!row.contains("<b>model"), "{row}");
    assert!(
        row.contains("<small class=\"why\">&lt;i&gt;why&lt;/i&gt;</small>"),
        "{row}"
    );
    assert!(
        row.contains("restarted: the app exited with code 1 (")
            && row.contains("re-adopted after an agent restart ("),
        "{row}"
    );
    // An older agent's summary: the step marked failed, without a reason.
    let (cell, _) = text::last_deploy(&json!({"ok": false, "total_ms": 5,
        "steps": [{"step": "fetch", "result": "failed", "ms": 5}]}));
    assert_eq!(cell, "✗ fetch (failed in 5 ms)");
    assert_eq!(text::ago(59), "59s");
    assert_eq!(text::ago(3600), "60m");
}

#[test]
fn the_page_runs_only_its_own_script_and_is_never_framed() {
    let (page, policy) = super::locked_down("<style>a{}</style><script>go()</script>".into());
    let policy = policy.expect("a policy");
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a nonce");
    assert!(nonce.len() >= 16, "{policy}");
    assert!(
        page.contains(&format!("<script nonce=\"{nonce}\">go()</script>")),
        "{page}"
    );
    assert!(
        page.contains(&format!("<style nonce=\"{nonce}\">")),
        "{page}"
    );
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    let (_, other) = super::locked_down(String::new());
    assert_ne!(other, Some(policy), "a nonce per response");
}
