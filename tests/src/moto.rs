//! A real S3-compatible server on a loopback address of the test's own: moto's standalone
//! server (scripts/test.sh installs it into a virtualenv and links it as
//! `~/.cache/deployctl-tests/moto_server`). Of the S3 servers checked, it is the one that
//! honours conditional writes (If-Match / If-None-Match) under concurrent writers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http_get, http_request_with, wait_until};

/// moto_server on `IP:9000`, killed (by its pid) when dropped.
pub struct Moto {
    child: Child,
    /// `http://IP:9000`
    pub endpoint: String,
    /// Credentials it accepts: any without auth; with [`Moto::start_with_auth`], an IAM
    /// user's access key, the only one it accepts.
    pub access_key: String,
    pub secret_key: String,
}

/// Creates an IAM user allowed everything and its access key, then `BUCKET`, signed with
/// that key: prints the key. Runs with the python of moto's virtualenv (it has boto3).
const AUTH_SETUP: &str = r#"
import json, sys, boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="e2e")
iam.put_user_policy(UserName="e2e", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="e2e")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Stores standard input at `BUCKET/KEY`, signed with the given key.
const PUT: &str = r#"
import sys, boto3
endpoint, key, secret, bucket, name = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key, aws_secret_access_key=secret)
s3.put_object(Bucket=bucket, Key=name, Body=sys.stdin.buffer.read())
"#;

impl Moto {
    /// moto on `ip:9000` accepting any request (unsigned ones too).
    pub fn start(ip: &str) -> Moto {
        Moto::spawn(ip, None)
    }

    /// moto on `ip:9000` checking signatures: only the access key of an IAM user made at
    /// the start is accepted; `bucket` is created with it.
    pub fn start_with_auth(ip: &str, bucket: &str) -> Moto {
        // The setup's 3 IAM requests are the only unsigned ones it accepts.
        let mut moto = Moto::spawn(ip, Some("3"));
        let python = moto_bin().with_file_name("python");
        let out = Command::new(&python)
            .args(["-c", AUTH_SETUP, &moto.endpoint, bucket])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        match (out.status.success(), words.next(), words.next()) {
            (true, Some(key), Some(secret)) => {
                moto.access_key = key.to_string();
                moto.secret_key = secret.to_string();
            }
            _ => panic!(
                "setting up moto's IAM user failed\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        moto
    }

    fn spawn(ip: &str, no_auth_actions: Option<&str>) -> Moto {
        let bin = moto_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", ip, "-p", "9000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = no_auth_actions {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://{ip}:9000"),
            access_key: "e2e-key".into(),
            secret_key: "e2e-secret".into(),
        };
        // Its dashboard answers once it serves (it counts as no request).
        let up = wait_until(Duration::from_secs(30), || {
            http_get(&format!("{}/moto-api/", moto.endpoint)).is_some()
        });
        assert!(up, "moto_server did not answer on {ip}:9000");
        moto
    }

    /// The variables a client of it needs: credentials and region (not the endpoint).
    pub fn credentials(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// A request as a client with credentials makes it (without auth, moto does not check
    /// the signature; an anonymous request would meet the objects' private ACL).
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            self.access_key
        );
        let url = format!("{}/{path}", self.endpoint);
        http_request_with(method, &url, &[("Authorization", &auth)], body)
            .map(|a| (a.status, a.body))
    }

    /// Creates `bucket` (without auth only).
    pub fn create_bucket(&self, bucket: &str) {
        let (code, body) = self.request("PUT", bucket, None).expect("moto answers");
        assert_eq!(code, 200, "creating bucket {bucket}: {body}");
    }

    /// Stores `body` at `bucket/key`, signed with its credentials (boto3, moto's python).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        use std::io::Write;
        let python = moto_bin().with_file_name("python");
        let mut child = Command::new(&python)
            .args([
                "-c",
                PUT,
                &self.endpoint,
                &self.access_key,
                &self.secret_key,
                bucket,
                key,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        child
            .stdin
            .take()
            .expect("its stdin")
            .write_all(body)
            .expect("writing the object");
        let out = child.wait_with_output().expect("boto3's put");
        assert!(
            out.status.success(),
            "storing {bucket}/{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Deletes the object at `bucket/key` (without auth only).
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let (code, body) = self
            .request("DELETE", &format!("{bucket}/{key}"), None)
            .expect("moto answers");
        assert_eq!(code, 204, "deleting {bucket}/{key}: {body}");
    }

    /// The object at `bucket/key` (without auth only), if there is one.
    pub fn object(&self, bucket: &str, key: &str) -> Option<String> {
        match self.request("GET", &format!("{bucket}/{key}"), None) {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto_server: `$DEPLOYCTL_MOTO_SERVER`, else where scripts/test.sh links it. A missing
/// one fails the test (never a skip).
fn moto_bin() -> PathBuf {
    let linked = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|cache| cache.join("deployctl-tests/moto_server"));
    std::env::var_os("DEPLOYCTL_MOTO_SERVER")
        .map(PathBuf::from)
        .or(linked)
        .filter(|p| p.exists())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .expect("moto_server is not installed: scripts/test.sh installs it (ensure_moto in scripts/lib/tools.sh)")
}
