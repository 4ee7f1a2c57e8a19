//! `sluice tap`: prints what passes a stage of a running sluice, as JSON lines, read from its
//! admin endpoint (`/tap/{name}`, see `tap_stream`). Without a name, lists the taps.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, bail};

pub struct TapRequest {
    /// The running sluice's admin endpoint: `host:port` or a URL.
    pub admin: String,
    /// `points`, `documents`, `dead-letters`; `None` lists them.
    pub name: Option<String>,
    pub rate: u64,
    pub limit: Option<u64>,
}

pub fn run(request: &TapRequest) -> ExitCode {
    crate::on_one_thread(async {
        match tap(request).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn tap(request: &TapRequest) -> anyhow::Result<()> {
    let base = crate::admin::base_url(&request.admin);
    let client = reqwest::Client::new();
    let Some(name) = &request.name else {
        let names: Vec<String> = get(&client, &format!("{base}/tap"), &request.admin)
            .await?
            .json()
            .await
            .context("reading the list of taps")?;
        for name in names {
            println!("{name}");
        }
        return Ok(());
    };
    let mut url = format!("{base}/tap/{name}?rate={}", request.rate);
    if let Some(limit) = request.limit {
        url.push_str(&format!("&limit={limit}"));
    }
    let mut response = get(&client, &url, &request.admin).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response
        .chunk()
        .await
        .context("reading the tap (did sluice stop?)")?
    {
        stdout.write_all(&chunk).context("writing to stdout")?;
        // Each sample as it comes: a person or a `jq` downstream is watching.
        stdout.flush().context("writing to stdout")?;
    }
    Ok(())
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = client.get(url).send().await.with_context(|| {
        format!(
            "no sluice answers at {admin}: start one with `sluice run`, or point --admin \
             (SLUICE_ADMIN__LISTEN) at its admin.listen"
        )
    })?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("{status}: {}", body.trim());
    }
    Ok(response)
}
