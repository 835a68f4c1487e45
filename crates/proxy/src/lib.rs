//! The kubescribe Kubernetes API server proxy: identity-aware, impersonating, recording every request as an event and every exec/attach session.
