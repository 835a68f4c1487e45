// Command tailscale-k8s-proxy runs Tailscale's own Kubernetes API server
// proxy (tailscale.com/k8s-operator/api-proxy, as pinned in ../go.mod) on a
// tsnet node of a test tailnet. Test code only: kubescribe's interop tests
// use it to prove that what Tailscale's proxy sends, kubescribe-recorder
// takes.
//
// It runs the proxy as Tailscale's cmd/k8s-proxy does outside a cluster
// (https=false: plain HTTP on localhost:80 behind PROXY protocol v2), and
// forwards the node's TCP port 443 to it with PROXY protocol v2, the node-level
// equivalent of the Tailscale Service serve config cmd/k8s-proxy sets. There is
// no TLS on the tailnet side: TLS would need Tailscale's Let's Encrypt
// certificates (TerminateTLS), which a sealed test tailnet cannot get.
//
// A small HTTP listener on -debug-listen (loopback) answers GET /self (the
// node's address and name), GET /whois?addr=IP (the node's own WhoIs), so
// the harness can tell when grants have reached the node, and GET /metrics
// (Tailscale's client metrics as a JSON object: requests proxied, events and
// session recordings attempted, recordings uploaded).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/tools/clientcmd"
	"tailscale.com/ipn"
	apiproxy "tailscale.com/k8s-operator/api-proxy"
	"tailscale.com/kube/kubetypes"
	"tailscale.com/tsnet"
	"tailscale.com/util/clientmetric"
)

func main() {
	var (
		controlURL  = flag.String("control-url", "", "the tailnet's control server URL")
		stateDir    = flag.String("state-dir", "", "the tsnet node's state directory")
		hostname    = flag.String("hostname", "ts-k8s-proxy", "the node's hostname")
		tags        = flag.String("tags", "tag:ts-k8s-proxy", "comma-separated tags the node advertises")
		kubeconfig  = flag.String("kubeconfig", "", "kubeconfig of the upstream API server")
		mode        = flag.String("mode", "auth", "auth or noauth")
		debugListen = flag.String("debug-listen", "127.0.0.1:0", "loopback address of the /self and /whois listener")
	)
	flag.Parse()
	// No log uploads to Tailscale (the test tailnet has no route out anyway).
	os.Setenv("TS_NO_LOGS_NO_SUPPORT", "true")

	encoderCfg := zap.NewProductionEncoderConfig()
	encoderCfg.EncodeTime = zapcore.RFC3339TimeEncoder
	logger := zap.Must(zap.Config{
		Level:            zap.NewAtomicLevelAt(zap.DebugLevel),
		Encoding:         "json",
		OutputPaths:      []string{"stderr"},
		ErrorOutputPaths: []string{"stderr"},
		EncoderConfig:    encoderCfg,
	}.Build()).Sugar()
	defer logger.Sync()

	if *controlURL == "" || *stateDir == "" || *kubeconfig == "" {
		log.Fatal("-control-url, -state-dir and -kubeconfig are required")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("loading %s: %v", *kubeconfig, err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	var advertise []string
	for _, t := range strings.Split(*tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			advertise = append(advertise, t)
		}
	}
	ts := &tsnet.Server{
		Dir:           *stateDir,
		Hostname:      *hostname,
		ControlURL:    *controlURL,
		AdvertiseTags: advertise,
		Logf:          logger.Named("tsnet").Debugf,
		UserLogf:      logger.Named("tsnet").Infof,
	}
	defer ts.Close()
	upCtx, upCancel := context.WithTimeout(ctx, 60*time.Second)
	status, err := ts.Up(upCtx)
	upCancel()
	if err != nil {
		log.Fatalf("joining the tailnet: %v", err)
	}
	lc, err := ts.LocalClient()
	if err != nil {
		log.Fatalf("local client: %v", err)
	}

	// As cmd/k8s-proxy's setServeConfig, for the node rather than a Tailscale
	// Service, and without TerminateTLS (no certificates in a test tailnet).
	serve := &ipn.ServeConfig{TCP: map[uint16]*ipn.TCPPortHandler{
		443: {TCPForward: "localhost:80", ProxyProtocol: 2},
	}}
	if err := lc.SetServeConfig(ctx, serve); err != nil {
		log.Fatalf("setting the serve config: %v", err)
	}

	ap, err := apiproxy.NewAPIServerProxy(logger.Named("apiserver-proxy"), restConfig, ts, kubetypes.APIServerProxyMode(*mode), false)
	if err != nil {
		log.Fatalf("creating the API server proxy: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /self", func(w http.ResponseWriter, r *http.Request) {
		ip4, _ := ts.TailscaleIPs()
		json.NewEncoder(w).Encode(map[string]any{
			"ipv4":     ip4.String(),
			"fqdn":     status.Self.DNSName,
			"stableId": status.Self.ID,
		})
	})
	mux.HandleFunc("GET /whois", func(w http.ResponseWriter, r *http.Request) {
		who, err := lc.WhoIs(r.Context(), r.URL.Query().Get("addr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(who)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		values := map[string]int64{}
		for _, m := range clientmetric.Metrics() {
			values[m.Name()] = m.Value()
		}
		json.NewEncoder(w).Encode(values)
	})
	dbg := &http.Server{Addr: *debugListen, Handler: mux}
	go func() {
		if err := dbg.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatalf("debug listener: %v", err)
		}
	}()

	if err := ap.Run(ctx); err != nil {
		log.Fatalf("running the API server proxy: %v", err)
	}
}
