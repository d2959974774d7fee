//! The node proxy's keys of the config file: its timeouts, its connection limit, its
//! threads and the load balancers it trusts.

use std::time::Duration;

use super::{Config, ConfigError, FileConfig};

/// Lays the file's `proxy_*` and `trusted_proxies` keys over `config`.
pub(super) fn apply(
    file: &FileConfig,
    config: &mut Config,
    invalid: &dyn Fn(String) -> ConfigError,
    duration: &dyn Fn(&str, &str) -> Result<Duration, ConfigError>,
) -> Result<(), ConfigError> {
    let positive = |key: &str, v: &str| match duration(key, v)? {
        d if d.is_zero() => Err(invalid(format!("{key}: {v:?} must be more than 0"))),
        d => Ok(d),
    };
    if let Some(v) = &file.proxy_header_timeout {
        config.proxy_header_timeout = positive("proxy_header_timeout", v)?;
    }
    if let Some(v) = &file.proxy_idle_timeout {
        config.proxy_idle_timeout = positive("proxy_idle_timeout", v)?;
    }
    if let Some(v) = file.proxy_max_connections {
        if v == 0 {
            return Err(invalid("proxy_max_connections: must be at least 1".into()));
        }
        config.proxy_max_connections = v;
    }
    if let Some(n) = file.proxy_threads {
        if !(1..=1024).contains(&n) {
            return Err(invalid(format!("proxy_threads: {n} must be 1 to 1024")));
        }
        config.proxy_threads = Some(n);
    }
    if let Some(list) = &file.trusted_proxies {
        config.trusted_proxies = list
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|e| invalid(format!("trusted_proxies: {e}")))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}
