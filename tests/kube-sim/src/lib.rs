//! A Kubernetes API server simulator good enough for real kubectl: discovery, CRUD, watch, logs and exec/attach over SPDY and WebSocket.
