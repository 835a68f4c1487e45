//! `--recorder-dial`: how the proxy reaches its recorders, and the `auto` choice made at start-up.
//!
//! A proxy next to a tailscaled with a TUN device reaches tailnet addresses with plain TCP. A
//! proxy beside a tailscaled in userspace-networking mode (the common sidecar) has no route to
//! them: it must dial through tailscaled, as Tailscale's own proxy does (LocalAPI `ts-dial`), or
//! through tailscaled's SOCKS5 server.

use std::net::IpAddr;
use std::path::PathBuf;

use identity::IdentitySource;
use localapi::LocalApi;
use recorder_client::RecorderDialer;

/// The `--recorder-dial` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderDial {
    /// `auto`: direct when the host has a tailnet interface, else through the LocalAPI when
    /// WhoIs uses one, else direct.
    Auto,
    /// `direct`: plain TCP from this host.
    Direct,
    /// `localapi`: through tailscaled's LocalAPI (`--localapi-socket`, or tailscaled's default
    /// socket).
    LocalApi,
    /// `socks5://HOST:PORT`: through a SOCKS5 proxy (tailscaled's `--socks5-server`).
    Socks5(String),
}

impl std::str::FromStr for RecorderDial {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RecorderDial::Auto),
            "direct" => Ok(RecorderDial::Direct),
            "localapi" => Ok(RecorderDial::LocalApi),
            other => match other.strip_prefix("socks5://") {
                Some(hostport) => match hostport.rsplit_once(':') {
                    Some((host, port))
                        if !host.is_empty()
                            && !host.contains('/')
                            && port.parse::<u16>().is_ok_and(|p| p != 0) =>
                    {
                        Ok(RecorderDial::Socks5(hostport.to_owned()))
                    }
                    _ => Err(format!(
                        "{other:?} is not socks5://HOST:PORT (IPv6 as socks5://[addr]:port)"
                    )),
                },
                None => Err(format!(
                    "{other:?} is not one of auto, direct, localapi, socks5://HOST:PORT"
                )),
            },
        }
    }
}

impl std::fmt::Display for RecorderDial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecorderDial::Auto => f.write_str("auto"),
            RecorderDial::Direct => f.write_str("direct"),
            RecorderDial::LocalApi => f.write_str("localapi"),
            RecorderDial::Socks5(addr) => write!(f, "socks5://{addr}"),
        }
    }
}

/// A network interface with a tailnet address: its name and that address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TailnetInterface {
    pub(crate) name: String,
    pub(crate) addr: IpAddr,
}

/// The first interface of this host that has a tailnet address (a TUN device tailscaled made),
/// if any. An error listing interfaces counts as none.
pub(crate) fn tailnet_interface() -> Option<TailnetInterface> {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces,
        Err(error) => {
            tracing::warn!(%error, "cannot list network interfaces; assuming no tailnet interface");
            return None;
        }
    };
    interfaces
        .into_iter()
        .find(|i| localapi::is_tailnet_address(i.ip()))
        .map(|i| TailnetInterface {
            addr: i.ip(),
            name: i.name,
        })
}

/// The dialer `flag` means on this host, and why (for the start-up log).
pub(crate) fn choose(
    flag: &RecorderDial,
    identity: &IdentitySource,
    tailnet: Option<&TailnetInterface>,
) -> (RecorderDialer, String) {
    let identity_socket = match identity {
        IdentitySource::LocalApi(path) => Some(path.clone()),
        IdentitySource::File(_) => None,
    };
    match flag {
        RecorderDial::Direct => (RecorderDialer::Direct, "--recorder-dial direct".to_owned()),
        RecorderDial::LocalApi => {
            let socket = identity_socket
                .unwrap_or_else(|| PathBuf::from(localapi::DEFAULT_TAILSCALED_SOCKET));
            (
                RecorderDialer::LocalApi(LocalApi::new(socket)),
                "--recorder-dial localapi".to_owned(),
            )
        }
        RecorderDial::Socks5(proxy) => (
            RecorderDialer::Socks5(proxy.clone()),
            format!("--recorder-dial socks5://{proxy}"),
        ),
        RecorderDial::Auto => match (tailnet, identity_socket) {
            (Some(iface), _) => (
                RecorderDialer::Direct,
                format!(
                    "--recorder-dial auto: interface {} has the tailnet address {} (a TUN \
                     device), so tailnet addresses are reachable directly",
                    iface.name, iface.addr
                ),
            ),
            (None, Some(socket)) => (
                RecorderDialer::TailnetThroughLocalApi(LocalApi::new(socket)),
                "--recorder-dial auto: no interface has a tailnet address (tailscaled in \
                 userspace-networking mode?), and WhoIs uses tailscaled's LocalAPI: tailnet \
                 addresses are dialed through it, any other address directly"
                    .to_owned(),
            ),
            (None, None) => (
                RecorderDialer::Direct,
                "--recorder-dial auto: no interface has a tailnet address and no LocalAPI \
                 socket is configured (identity file), so recorders are dialed directly"
                    .to_owned(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_every_form_and_names_what_is_wrong() {
        assert_eq!("auto".parse(), Ok(RecorderDial::Auto));
        assert_eq!("direct".parse(), Ok(RecorderDial::Direct));
        assert_eq!("localapi".parse(), Ok(RecorderDial::LocalApi));
        assert_eq!(
            "socks5://localhost:1055".parse(),
            Ok(RecorderDial::Socks5("localhost:1055".into()))
        );
        assert_eq!(
            "socks5://[::1]:1055".parse(),
            Ok(RecorderDial::Socks5("[::1]:1055".into()))
        );
        for bad in [
            "",
            "tcp",
            "socks5://",
            "socks5://host",
            "socks5://:1055",
            "socks5://h:0",
            "socks5://h:99999",
            "socks5://h:1/x",
            "socks4://h:1",
        ] {
            let err = bad.parse::<RecorderDial>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        for flag in ["auto", "direct", "localapi", "socks5://h:1"] {
            assert_eq!(flag.parse::<RecorderDial>().unwrap().to_string(), flag);
        }
    }

    #[test]
    fn tailnet_addresses_are_cgnat_and_tailscales_ula() {
        for ip in [
            "100.64.0.1",
            "100.127.255.255",
            "fd7a:115c:a1e0::1",
            "fd7a:115c:a1e0:ab::9",
        ] {
            assert!(localapi::is_tailnet_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "100.63.255.255",
            "100.128.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "fd7a:115c:a1e1::1",
            "::1",
        ] {
            assert!(!localapi::is_tailnet_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn auto_prefers_a_tun_then_the_localapi_then_direct() {
        let tun = TailnetInterface {
            name: "tailscale0".into(),
            addr: "100.64.0.7".parse().unwrap(),
        };
        let socket = IdentitySource::LocalApi("/run/ts.sock".into());
        let file = IdentitySource::File("/ids.yaml".into());

        let (dialer, why) = choose(&RecorderDial::Auto, &socket, Some(&tun));
        assert_eq!(dialer, RecorderDialer::Direct);
        assert!(
            why.contains("tailscale0") && why.contains("100.64.0.7"),
            "{why}"
        );

        let (dialer, why) = choose(&RecorderDial::Auto, &socket, None);
        assert_eq!(
            dialer,
            RecorderDialer::TailnetThroughLocalApi(LocalApi::new("/run/ts.sock"))
        );
        assert!(why.contains("userspace-networking"), "{why}");
        assert!(why.contains("any other address directly"), "{why}");

        let (dialer, why) = choose(&RecorderDial::Auto, &file, None);
        assert_eq!(dialer, RecorderDialer::Direct);
        assert!(why.contains("identity file"), "{why}");

        // Explicit choices are taken as they are.
        assert_eq!(
            choose(&RecorderDial::Direct, &socket, None).0,
            RecorderDialer::Direct
        );
        assert_eq!(
            choose(&RecorderDial::LocalApi, &file, Some(&tun)).0,
            RecorderDialer::LocalApi(LocalApi::new(localapi::DEFAULT_TAILSCALED_SOCKET))
        );
        assert_eq!(
            choose(&RecorderDial::Socks5("h:1".into()), &socket, None).0,
            RecorderDialer::Socks5("h:1".into())
        );
    }
}
