//! Tailnet caller identity for kubescribe: WhoIs over tailscaled's LocalAPI or a static identity file, Kubernetes capability grants, recorder policy and impersonation headers.
