//! `s3://BUCKET/KEY` artifacts: read with the deployment owner's credentials, kept as the
//! owner's secrets on this agent (`deployctl secret set --owner OWNER NAME`):
//!
//! * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: required;
//! * `AWS_SESSION_TOKEN`: temporary credentials;
//! * `AWS_REGION`: the bucket's region (default us-east-1);
//! * `AWS_ENDPOINT_URL`: an S3-compatible store (MinIO, R2, Ceph RGW, ...) instead of AWS S3.
//!
//! The agent GETs the object through the S3 API (SigV4-signed by `object_store`), like an
//! https:// artifact: streamed into the store, hashed as it is written, resumed with a
//! Range request after a broken transfer. The app gets none of these secrets unless its
//! spec lists them.

use std::time::Duration;

use std::sync::atomic::Ordering;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, GetOptions, GetRange, ObjectStore, RetryConfig};
use tokio_stream::StreamExt;

use super::download::{disk, gave_up, room, STALL, TRIES};
use super::partial::Partial;
use super::Progress;
use crate::secrets::SecretStore;

/// The secrets an s3:// artifact needs.
pub(crate) const REQUIRED: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// An owner's S3 credentials and where they apply.
#[derive(Clone)]
pub(crate) struct S3Access {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
    region: Option<String>,
    /// `AWS_ENDPOINT_URL`; `None`: AWS S3.
    endpoint: Option<String>,
}

impl std::fmt::Debug for S3Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("S3Access")
            .field("access_key", &self.access_key)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Access {
    /// `owner`'s credentials, or why there are none: the secrets to set, as commands.
    pub(crate) async fn of_owner(secrets: &SecretStore, owner: &str) -> Result<S3Access, String> {
        let names: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
        let values = secrets.env_values(owner, &names).await.map_err(|missing| {
            let commands: Vec<String> = missing
                .iter()
                .map(|name| format!("`deployctl secret set --owner {owner} {name}`"))
                .collect();
            let (secrets, them) = if missing.len() == 1 {
                ("secret", "it")
            } else {
                ("secrets", "them")
            };
            format!(
                "an s3:// artifact is read with its owner's credentials, and {owner} has no {secrets} {}: set {them} with {} (the value on standard input); AWS_REGION, AWS_ENDPOINT_URL and AWS_SESSION_TOKEN are optional",
                missing.join(", "),
                commands.join(" and ")
            )
        })?;
        let value = |name: &str| {
            values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let optional = |name: &'static str| async move {
            secrets
                .env_values(owner, &[name.to_string()])
                .await
                .ok()
                .and_then(|v| v.into_iter().next())
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Ok(S3Access {
            access_key: value("AWS_ACCESS_KEY_ID"),
            secret_key: value("AWS_SECRET_ACCESS_KEY"),
            session_token: optional("AWS_SESSION_TOKEN").await,
            region: optional("AWS_REGION").await,
            endpoint: optional("AWS_ENDPOINT_URL").await,
        })
    }

    /// Where the requests go, for messages.
    pub(crate) fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(url) => url.clone(),
            None => format!("AWS S3 ({})", self.region.as_deref().unwrap_or("us-east-1")),
        }
    }

    /// The S3 client for `bucket` with these credentials.
    fn client(&self, bucket: &str) -> Result<AmazonS3, String> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_region(self.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "the owner's secret AWS_ENDPOINT_URL is not an http:// or https:// URL ({endpoint:?})"
                ));
            }
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        builder
            .build()
            .map_err(|e| format!("the owner's S3 settings: {e}"))
    }

    /// Downloads `s3://BUCKET/KEY` into `file`, from where it holds already; a broken
    /// transfer is resumed (a Range from the partial file's length, If-Match on the ETag so
    /// a changed object comes whole) a few times.
    pub(super) async fn download(
        &self,
        url: &url::Url,
        file: &mut Partial,
        progress: &Progress,
    ) -> Result<(), String> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or("no bucket")?;
        let key =
            Key::parse(url.path().trim_start_matches('/')).map_err(|e| format!("the key: {e}"))?;
        let store = self.client(bucket)?;
        let mut etag: Option<String> = None;
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
            }
            let from = file.len;
            let opts = GetOptions {
                if_match: etag.clone(),
                range: (from > 0).then_some(GetRange::Offset(from)),
                ..Default::default()
            };
            let got = match store.get_opts(&key, opts).await {
                Ok(got) => got,
                // Nothing after what the partial file holds: it is whole (the hash decides).
                Err(e) if from > 0 && e.to_string().contains("416") => return Ok(()),
                // Changed since the first bytes: all of it again.
                Err(object_store::Error::Precondition { .. }) => {
                    file.reset().await.map_err(|e| disk(&file.path, e))?;
                    (etag, last) = (None, "the object changed during the download".into());
                    continue;
                }
                Err(e) => return Err(self.explain(bucket, &key, e)),
            };
            if got.range.start != from {
                file.reset().await.map_err(|e| disk(&file.path, e))?;
                last = "the store sent another range than asked for".into();
                continue;
            }
            if from > 0 {
                let _ = progress.resumed_at.compare_exchange(
                    0,
                    from,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            etag = etag.or_else(|| got.meta.e_tag.clone());
            progress.total.store(got.meta.size, Ordering::Relaxed);
            room(&file.path, got.meta.size, from)?;
            progress.done.store(from, Ordering::Relaxed);
            let mut body = got.into_stream();
            loop {
                let chunk = match tokio::time::timeout(STALL, body.next()).await {
                    Err(_) => {
                        last = format!("nothing received for {} s", STALL.as_secs());
                        break;
                    }
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => {
                        last = format!("the transfer broke: {e}");
                        break;
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                let n = chunk.len() as u64;
                file.write(chunk).await.map_err(|e| disk(&file.path, e))?;
                progress.done.fetch_add(n, Ordering::Relaxed);
                progress.transferred.fetch_add(n, Ordering::Relaxed);
            }
        }
        Err(gave_up(&last, file))
    }

    /// An error of the store, said for the one who set the secrets: the endpoint named.
    fn explain(&self, bucket: &str, key: &Key, e: object_store::Error) -> String {
        let at = self.endpoint();
        let text = e.to_string();
        let code = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "ExpiredToken",
            "InvalidToken",
        ]
        .into_iter()
        .find(|c| text.contains(c));
        if text.contains("NoSuchBucket") {
            format!("no bucket {bucket:?} at {at} (the owner's secrets AWS_ENDPOINT_URL and AWS_REGION say where)")
        } else if let Some(code) = code {
            format!("{at} refused the owner's credentials ({code}): check the owner's secrets AWS_ACCESS_KEY_ID (now {}) and AWS_SECRET_ACCESS_KEY", self.access_key)
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) {
            format!("{at} refused the owner's credentials: check the owner's secrets AWS_ACCESS_KEY_ID (now {}) and AWS_SECRET_ACCESS_KEY", self.access_key)
        } else if matches!(e, object_store::Error::NotFound { .. }) {
            format!("no object {key} in the bucket {bucket:?} at {at}")
        } else {
            let line = text.lines().next().unwrap_or(&text);
            let line = line.split("<?xml").next().unwrap_or(line).trim();
            format!("{at}: {line}")
        }
    }
}
