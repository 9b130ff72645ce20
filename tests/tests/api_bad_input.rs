//! Bad input to the Kubernetes API of a `keel server` process, sent with curl
//! and the admin client certificate: every case gets a 4xx `Status` with the
//! right reason, nothing is stored, and the server stays healthy.

use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::wait_until;

/// (HTTP code, body) of a curl request with the admin certificate.
fn curl(s: &KeelServer, args: &[&str]) -> (u16, serde_json::Value) {
    let out = s
        .curl(&[&["-w", "\n%{http_code}"][..], args].concat())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn bad_input_gets_a_status_and_stores_nothing() {
    // Killed when the test ends, failed assertions included.
    let server = KeelServer::start(&[]);
    let cms = "BASE/api/v1/namespaces/default/configmaps";
    wait_until("the server to be ready", Duration::from_secs(60), || {
        (curl(&server, &["BASE/api/v1/namespaces/default"]).0 == 200).then_some(())
    });
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(2_000_000)
    );
    let big_file = server.dir().join("big.json");
    std::fs::write(&big_file, big).unwrap();
    let big_arg = format!("@{}", big_file.display());
    let json = ["-H", "Content-Type: application/json", "-X", "POST"];
    let cases: Vec<(&str, Vec<&str>, u16, &str)> = vec![
        (
            "malformed JSON",
            [&json[..], &["-d", "{bad json", cms]].concat(),
            400,
            "BadRequest",
        ),
        (
            "malformed YAML",
            vec![
                "-H",
                "Content-Type: application/yaml",
                "-X",
                "POST",
                "-d",
                "a: [b",
                cms,
            ],
            400,
            "BadRequest",
        ),
        (
            "a YAML body without a name",
            vec![
                "-H",
                "Content-Type: application/yaml",
                "-X",
                "POST",
                "-d",
                "data: {a: b}",
                cms,
            ],
            422,
            "Invalid",
        ),
        (
            "a body in an unknown format",
            vec![
                "-H",
                "Content-Type: text/plain",
                "-X",
                "POST",
                "-d",
                "a: b",
                cms,
            ],
            415,
            "UnsupportedMediaType",
        ),
        (
            "wrong apiVersion",
            [
                &json[..],
                &[
                    "-d",
                    r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
                    cms,
                ],
            ]
            .concat(),
            400,
            "BadRequest",
        ),
        (
            "wrong kind",
            [
                &json[..],
                &[
                    "-d",
                    r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
                    cms,
                ],
            ]
            .concat(),
            400,
            "BadRequest",
        ),
        (
            "an invalid name",
            [
                &json[..],
                &[
                    "-d",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#,
                    cms,
                ],
            ]
            .concat(),
            422,
            "Invalid",
        ),
        (
            "an unknown field under Strict",
            [
                &json[..],
                &[
                    "-d",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dat":{}}"#,
                    "BASE/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
                ],
            ]
            .concat(),
            400,
            "BadRequest",
        ),
        (
            "an object over the size limit",
            [&json[..], &["--data-binary", &big_arg, cms]].concat(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "a non-numeric resourceVersion on list",
            vec!["BASE/api/v1/namespaces/default/configmaps?resourceVersion=abc&limit=1"],
            400,
            "BadRequest",
        ),
        (
            "a non-numeric resourceVersion on watch",
            vec!["BASE/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc"],
            400,
            "BadRequest",
        ),
        (
            "a missing namespace",
            [
                &json[..],
                &[
                    "-d",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
                    "BASE/api/v1/namespaces/nope/configmaps",
                ],
            ]
            .concat(),
            404,
            "NotFound",
        ),
        (
            "an unknown resource",
            vec!["BASE/api/v1/frobnicators"],
            404,
            "NotFound",
        ),
    ];
    for (what, args, code, reason) in cases {
        let (got, body) = curl(&server, &args);
        assert_eq!(got, code, "{what}: {body}");
        assert_eq!(body["kind"], "Status", "{what}: {body}");
        assert_eq!(body["reason"], reason, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
    }
    let (_, invalid) = curl(
        &server,
        &[
            &json[..],
            &[
                "-d",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#,
                cms,
            ],
        ]
        .concat(),
    );
    assert_eq!(
        invalid["details"]["causes"][0]["field"], "metadata.name",
        "{invalid}"
    );
    // Nothing was stored, and the server is healthy.
    let (code, list) = curl(&server, &[cms]);
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    assert_eq!(curl(&server, &["BASE/readyz"]).0, 200);
}
