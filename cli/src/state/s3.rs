//! The S3 backend: the whole state is one JSON object, `s3://BUCKET/PREFIX/state.json`, in
//! AWS S3 or an S3-compatible store (MinIO, Cloudflare R2, Ceph RGW, ...). Every change is a
//! read-modify-write whose write is conditional: `If-Match` on the ETag that was read
//! (`If-None-Match: *` when the object did not exist yet). When another writer got there
//! first the store refuses the write (412) and the change is applied again to what is there
//! now, so no concurrent writer loses an update. A PUT replaces the object whole or not at
//! all: a writer killed mid-change leaves the previous state readable.
//!
//! The endpoint and credentials come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`), the endpoint also from `core.state.endpoint`. The client is
//! `object_store`'s (its conditional puts are these requests).

use std::time::Duration;

use anyhow::anyhow;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig,
    UpdateVersion,
};

use super::{BoxFuture, Change, State, StateStore};

/// Attempts of one update before giving up (each lost race means another writer won).
const MAX_ATTEMPTS: u32 = 200;
/// The object under the prefix.
const OBJECT: &str = "state.json";

pub(crate) struct S3State {
    /// `s3://BUCKET/PREFIX/state.json`, for messages.
    url: String,
    bucket: String,
    key: Key,
    /// Where the requests go, for messages: the endpoint URL, or AWS S3 and its region.
    endpoint: String,
    store: AmazonS3,
    /// What to check when the store cannot be read, or nothing.
    advice: String,
}

impl S3State {
    /// `BUCKET/PREFIX` (the part after `s3://`); `endpoint`: `core.state.endpoint`, which
    /// wins over `AWS_ENDPOINT_URL`. `advice`: what to check when it cannot be read.
    pub(crate) fn parse(
        rest: &str,
        endpoint: Option<&str>,
        advice: &str,
    ) -> Result<S3State, String> {
        let env = AmazonS3Builder::from_env();
        S3State::with(env, has_credentials(), rest, endpoint, advice)
    }

    /// [`S3State::parse`] with the settings `builder` has (`credentials`: it has some).
    fn with(
        builder: AmazonS3Builder,
        credentials: bool,
        rest: &str,
        endpoint: Option<&str>,
        advice: &str,
    ) -> Result<S3State, String> {
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        check_bucket(bucket)?;
        let key = if prefix.is_empty() {
            OBJECT.to_string()
        } else {
            format!("{prefix}/{OBJECT}")
        };
        let key = Key::parse(&key).map_err(|e| format!("PREFIX {prefix:?}: {e}"))?;
        let mut builder = builder.with_bucket_name(bucket);
        if let Some(url) = endpoint.filter(|e| !e.trim().is_empty()) {
            builder = builder.with_endpoint(url.trim());
        }
        let configured = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint));
        let endpoint = match &configured {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
            Some(url) => {
                return Err(format!(
                    "the endpoint {url:?} is not an http:// or https:// URL (core.state.endpoint or AWS_ENDPOINT_URL)"
                ))
            }
            None => {
                let region = builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("AWS S3 ({region})")
            }
        };
        if configured.is_some() && !credentials {
            return Err(format!(
                "no credentials for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ));
        }
        let store = builder
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
            })
            .build()
            .map_err(|e| match e.to_string() {
                t if t.contains("Missing") => {
                    format!("{t}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together")
                }
                t => t,
            })?;
        Ok(S3State {
            url: format!("s3://{bucket}/{key}"),
            bucket: bucket.to_string(),
            key,
            endpoint,
            store,
            advice: advice.to_string(),
        })
    }

    /// The state and the version it was read at (`None`: there is no object yet).
    async fn read(&self) -> anyhow::Result<(State, Option<UpdateVersion>)> {
        let got = match self.store.get(&self.key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { source, .. })
                if !source.to_string().contains("NoSuchBucket") =>
            {
                return Ok((State::default(), None))
            }
            Err(e) => return Err(self.explain("reading", e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        if version.e_tag.is_none() && version.version.is_none() {
            return Err(anyhow!(
                "{} at {} came without an ETag: this store cannot do the conditional writes the state needs",
                self.url, self.endpoint
            ));
        }
        let bytes = got.bytes().await.map_err(|e| self.explain("reading", e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((State::default(), Some(version)));
        }
        let state = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "{} at {} is not a valid state ({e}); fix or move it (deployctl will not overwrite it)",
                self.url,
                self.endpoint
            )
        })?;
        Ok((state, Some(version)))
    }

    /// One read-modify-write; `false` when another writer changed the object meanwhile.
    async fn try_update(&self, change: Change<'_>) -> anyhow::Result<bool> {
        let (before, version) = self.read().await?;
        let mut after = before.clone();
        change(&mut after)?;
        if after == before {
            return Ok(true);
        }
        let mut bytes = serde_json::to_vec_pretty(&after)?;
        bytes.push(b'\n');
        let mode = match version {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self.store.put_opts(&self.key, bytes.into(), opts).await {
            Ok(_) => Ok(true),
            // 412 (If-Match / If-None-Match failed) or 409 (a concurrent conditional write).
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.explain("writing", e)),
        }
    }

    /// An error of the store, said for a person: a bucket that does not exist, credentials
    /// it refuses, or an endpoint that does not answer, each naming the endpoint.
    fn explain(&self, doing: &str, e: object_store::Error) -> anyhow::Error {
        let text = e.to_string();
        let advice = if self.advice.is_empty() {
            String::new()
        } else {
            format!("; {}", self.advice)
        };
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        let why = if text.contains("NoSuchBucket") {
            format!("the bucket {bucket:?} does not exist at {endpoint}")
        } else if let Some(code) = ["InvalidAccessKeyId", "SignatureDoesNotMatch"]
            .into_iter()
            .find(|c| text.contains(c))
        {
            format!("{endpoint} refused the credentials ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || text.contains("AccessDenied")
        {
            format!("{endpoint} denied access to the bucket {bucket:?} with these credentials (AWS_ACCESS_KEY_ID)")
        } else if text.contains("error sending request")
            || text.contains("connect")
            || text.contains("timed out")
        {
            format!("{endpoint} does not answer ({})", one_line(&text))
        } else {
            format!("{endpoint}: {}", one_line(&text))
        };
        anyhow!("{doing} the state {}: {why}{advice}", self.url)
    }
}

/// Whether credentials are configured in the environment (keys, a web identity or a
/// container role): without them object_store would ask an EC2 instance's metadata service,
/// which an S3-compatible store's user does not have.
fn has_credentials() -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// S3's bucket naming rules, the ones a typo breaks: 3 to 63 lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected s3://BUCKET/PREFIX, where BUCKET is 3-63 lowercase letters, digits, dots and hyphens (got {bucket:?})"
        ))
    }
}

/// The first line of an error's text, without the XML a store sends.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    line.split("<?xml")
        .next()
        .unwrap_or(line)
        .trim()
        .to_string()
}

/// A pause after a lost race: longer with each attempt, spread between writers.
fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = u64::from((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000);
    let ceiling = 5u64 << attempt.min(6);
    Duration::from_millis(1 + spread * ceiling / 1000)
}

impl StateStore for S3State {
    fn load(&self) -> BoxFuture<'_, State> {
        Box::pin(async move { Ok(self.read().await?.0) })
    }

    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for attempt in 0..MAX_ATTEMPTS {
                if self.try_update(&mut *change).await? {
                    return Ok(());
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(anyhow!(
                "the state {} at {} kept changing under this update ({MAX_ATTEMPTS} attempts); try again",
                self.url,
                self.endpoint
            ))
        })
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.url, self.endpoint)
    }
}

#[cfg(test)]
mod tests;
