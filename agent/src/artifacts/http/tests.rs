use http_body_util::BodyExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn content_ranges() {
    assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
    assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
    assert_eq!(content_range("bytes */200"), None);
}

/// A CA, and a server certificate for 127.0.0.1 it signed: (CA, server config).
fn tls_pair() -> (
    rustls::pki_types::CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.der().clone(), Arc::new(server))
}

/// An https server that answers one request with a redirect, the next with the body.
async fn serve(server: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        for answer in [
            "HTTP/1.1 302 Found\r\nLocation: /model.pkl\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmodel",
        ] {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // A client that does not trust the certificate ends here.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await.ok() == Some(1) {
                head.push(byte[0]);
            }
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    port
}

#[tokio::test]
async fn https_with_a_trusted_ca_and_a_redirect() {
    let (ca, server) = tls_pair();
    let port = serve(server).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = config_with(roots).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{port}/old.pkl")).unwrap();
    let mut answer = get(&url, 0, None, || {
        let c = config.clone();
        async move { Ok(c) }
    })
    .await
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    assert_eq!(answer.status, 200);
    let body = (&mut answer.body).collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"model");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_for_good() {
    let (_, server) = tls_pair();
    let port = serve(server).await;
    let config = config_with(rustls::RootCertStore::empty()).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{port}/m.pkl")).unwrap();
    let refused = get(&url, 0, None, || {
        let c = config.clone();
        async move { Ok(c) }
    })
    .await;
    assert!(
        matches!(&refused, Err(Failure::Final(e)) if e.contains("TLS with 127.0.0.1")),
        "{:?}",
        refused.err()
    );
}
