//! `keel-example-apiserver --listen ADDR --serving-name NAME --serving-ca-out
//! PATH --requestheader-client-ca-file PATH [--requestheader-allowed-names
//! A,B]`: the example extension API server ([`keel_tests::example_apiserver`])
//! as a process, for the aggregation test and for trying aggregation by
//! hand. Prints `listening on ADDR` to stdout once it accepts connections,
//! and each request it serves (with the user) to stderr.

use std::path::PathBuf;

use keel_tests::example_apiserver::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".parse()?;
    let (mut names, mut ca_out, mut client_ca, mut allowed) = (vec![], None, None, vec![]);
    while let Some(a) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--listen" => listen = value.parse()?,
            "--serving-name" => names.push(value),
            "--serving-ca-out" => ca_out = Some(PathBuf::from(value)),
            "--requestheader-client-ca-file" => client_ca = Some(PathBuf::from(value)),
            "--requestheader-allowed-names" => {
                allowed = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => anyhow::bail!("unknown option {a}"),
        }
    }
    if names.is_empty() {
        anyhow::bail!("--serving-name is required");
    }
    run(Config {
        listen,
        serving_names: names,
        serving_ca_out: ca_out.ok_or_else(|| anyhow::anyhow!("--serving-ca-out is required"))?,
        client_ca_file: client_ca
            .ok_or_else(|| anyhow::anyhow!("--requestheader-client-ca-file is required"))?,
        allowed_names: allowed,
    })
    .await
}
