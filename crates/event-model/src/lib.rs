//! Wire types of kubescribe: the kubernetes-api-request event, its response record and the asciicast v2 session stream, compatible with Tailscale's recorder.
