// Command etcd is the storage backend for the test control plane: etcd's own
// server entry point, built from the Go module proxy (tests only).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
