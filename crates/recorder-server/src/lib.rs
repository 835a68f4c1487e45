//! The kubescribe recorder: receives events and session recordings over HTTP/1.1 and h2c, stores them durably on disk or S3, and serves a query API and web UI.
