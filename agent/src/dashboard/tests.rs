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
