// Command control is the tailnet's coordination server for kubescribe's tests: Tailscale's
// in-memory test control server (tailscale.com/tstest/integration/testcontrol) with an in-process
// DERP relay and STUN server on loopback, and a small admin API of ours on the same listener to
// set grants. Built from the Go module proxy for tests only; never part of the product.
//
// Admin API (plain HTTP, loopback only):
//
//	GET /kubescribe/nodes   every node: name, IDs, addresses, tags, user (JSON array)
//	PUT /kubescribe/grants  the grants, replacing the previous ones (JSON array of Grant)
//	GET /kubescribe/grants  the grants as last set
//
// A grant names its sources and destinations by selector: "*", "tag:NAME", "user:LOGIN" or
// "host:HOSTNAME". The control server turns each grant into a packet-filter CapGrant rule (the
// form in which a real control server delivers grants) with the selectors resolved to the
// matching nodes' addresses, and, like a real control server, resolves "recorder" tags inside a
// tailscale.com/cap/kubernetes value into "recorderAddrs" (lowest address first, port 80) unless
// the grant says "keepRecorderTags" or the value already has addresses.
//
// Grants reach a node at the start of each map stream (testcontrol's ModifyFirstMapResponse, as
// a named packet filter that later incremental responses leave in place). Setting grants closes
// every node's control connection, so each node reconnects and receives them within seconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"tailscale.com/net/tsaddr"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

// Grant is one grant of the admin API.
type Grant struct {
	Src []string `json:"src"`
	Dst []string `json:"dst"`
	// App maps a capability name to its values, as in a policy file's grant.
	App map[tailcfg.PeerCapability][]json.RawMessage `json:"app"`
	// KeepRecorderTags leaves "recorder" tags unresolved (no "recorderAddrs" added), for
	// proxies that resolve them themselves.
	KeepRecorderTags bool `json:"keepRecorderTags,omitempty"`
}

// NodeInfo is one node as GET /kubescribe/nodes reports it.
type NodeInfo struct {
	Name      string   `json:"name"`
	Hostname  string   `json:"hostname"`
	ID        int64    `json:"id"`
	StableID  string   `json:"stableId"`
	Addresses []string `json:"addresses"`
	Tags      []string `json:"tags"`
	UserID    int64    `json:"userId"`
	UserLogin string   `json:"userLogin"`
}

const kubernetesCap = tailcfg.PeerCapability("tailscale.com/cap/kubernetes")

// loginDomain is testcontrol's: each node's user is "user-<ID>@" this.
const loginDomain = "fake-control.example.net"

type admin struct {
	control *testcontrol.Server

	mu     sync.Mutex
	grants []Grant
	conns  map[net.Conn]struct{} // control connections (Noise upgrades) in progress
}

type connKey struct{}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve control, DERP's STUN and the admin API on")
	authKey := flag.String("authkey", "", "auth key every node must present (empty: none)")
	magicDNS := flag.String("magicdns-domain", "kubescribe-test.ts.net", "MagicDNS suffix of node names")
	verbose := flag.Bool("verbose", false, "log every control message")
	flag.Parse()

	logf := logger.Discard
	if *verbose {
		logf = log.Printf
	}
	derpMap := integration.RunDERPAndSTUN(quietTB{}, logf, "127.0.0.1")

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	baseURL := "http://" + ln.Addr().String()
	a := &admin{conns: map[net.Conn]struct{}{}}
	a.control = &testcontrol.Server{
		Logf:            logf,
		Verbose:         *verbose,
		DERPMap:         derpMap,
		RequireAuthKey:  *authKey,
		ExplicitBaseURL: baseURL,
		MagicDNSDomain:  *magicDNS,
		AllOnline:       true,
		// Non-nil: nodes get the tags they ask for (--advertise-tags) when they sign up.
		TagOwners:              map[string][]string{},
		ModifyFirstMapResponse: a.addGrants,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/kubescribe/nodes", a.serveNodes)
	mux.HandleFunc("/kubescribe/grants", a.serveGrants)
	mux.HandleFunc("/ts2021", a.trackConn)
	mux.Handle("/", a.control)
	srv := &http.Server{
		Handler:     mux,
		ErrorLog:    log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
	}
	// The one line a launcher waits for, on stdout.
	fmt.Printf("control listening on %s\n", baseURL)
	os.Stdout.Sync()
	log.Fatal(srv.Serve(ln))
}

// trackConn serves a Noise upgrade while remembering its connection, so that setting grants can
// close it and make the node reconnect.
func (a *admin) trackConn(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if c != nil {
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			delete(a.conns, c)
			a.mu.Unlock()
		}()
	}
	a.control.ServeHTTP(w, r)
}

func (a *admin) serveNodes(w http.ResponseWriter, r *http.Request) {
	var out []NodeInfo
	for _, n := range a.control.AllNodes() {
		info := NodeInfo{
			Name:      n.Name,
			Hostname:  n.Hostinfo.Hostname(),
			ID:        int64(n.ID),
			StableID:  string(n.StableID),
			Tags:      n.Tags,
			UserID:    int64(n.User),
			UserLogin: loginOf(n.User),
		}
		for _, p := range n.Addresses {
			info.Addresses = append(info.Addresses, p.Addr().String())
		}
		out = append(out, info)
	}
	writeJSON(w, out)
}

func (a *admin) serveGrants(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		a.mu.Lock()
		defer a.mu.Unlock()
		writeJSON(w, a.grants)
	case http.MethodPut:
		var grants []Grant
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&grants); err != nil {
			http.Error(w, "bad grants: "+err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.grants = grants
		closed := len(a.conns)
		for c := range a.conns {
			c.Close()
		}
		a.mu.Unlock()
		log.Printf("grants set (%d); closed %d control connections so nodes fetch them", len(grants), closed)
		writeJSON(w, map[string]int{"grants": len(grants), "reconnecting": closed})
	default:
		http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
	}
}

// addGrants puts the grants, resolved against the nodes known now, into the first map response
// of a stream as the named packet filter "kubescribe-grants".
func (a *admin) addGrants(res *tailcfg.MapResponse, _ *tailcfg.MapRequest) {
	a.mu.Lock()
	grants := slices.Clone(a.grants)
	a.mu.Unlock()
	nodes := a.control.AllNodes()
	var rules []tailcfg.FilterRule
	for _, g := range grants {
		src := addrsOf(nodes, g.Src)
		dst := addrsOf(nodes, g.Dst)
		if len(src) == 0 || len(dst) == 0 {
			continue
		}
		var srcIPs []string
		for _, p := range src {
			srcIPs = append(srcIPs, p.String())
		}
		caps := tailcfg.PeerCapMap{}
		for name, values := range g.App {
			var out []tailcfg.RawMessage
			for _, v := range values {
				if name == kubernetesCap && !g.KeepRecorderTags {
					v = resolveRecorders(nodes, v)
				}
				out = append(out, tailcfg.RawMessage(v))
			}
			caps[name] = out
		}
		rules = append(rules, tailcfg.FilterRule{
			SrcIPs:   srcIPs,
			CapGrant: []tailcfg.CapGrant{{Dsts: dst, CapMap: caps}},
		})
	}
	// Always sent, even empty, so that a stream after a grant was removed drops it.
	res.PacketFilters = map[string][]tailcfg.FilterRule{"kubescribe-grants": rules}
}

// resolveRecorders adds "recorderAddrs" for the "recorder" tags of one kubernetes cap value,
// as a real control server does; anything that does not look like such a value is left as is.
func resolveRecorders(nodes []*tailcfg.Node, raw json.RawMessage) json.RawMessage {
	var value map[string]any
	if json.Unmarshal(raw, &value) != nil {
		return raw
	}
	tags, ok := value["recorder"].([]any)
	if !ok || value["recorderAddrs"] != nil {
		return raw
	}
	var selectors []string
	for _, t := range tags {
		if s, ok := t.(string); ok {
			selectors = append(selectors, s)
		}
	}
	var addrs []netip.Addr
	for _, p := range addrsOf(nodes, selectors) {
		if p.Addr().Is4() {
			addrs = append(addrs, p.Addr())
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	var out []string
	for _, ip := range addrs {
		out = append(out, netip.AddrPortFrom(ip, 80).String())
	}
	value["recorderAddrs"] = out
	b, err := json.Marshal(value)
	if err != nil {
		return raw
	}
	return b
}

// addrsOf resolves selectors to node address prefixes ("*" to every tailnet address).
func addrsOf(nodes []*tailcfg.Node, selectors []string) []netip.Prefix {
	var out []netip.Prefix
	for _, sel := range selectors {
		if sel == "*" {
			return []netip.Prefix{tsaddr.AllIPv4(), tsaddr.AllIPv6()}
		}
		for _, n := range nodes {
			if matches(n, sel) {
				out = append(out, n.Addresses...)
			}
		}
	}
	return out
}

func matches(n *tailcfg.Node, sel string) bool {
	switch {
	case strings.HasPrefix(sel, "tag:"):
		return slices.Contains(n.Tags, sel)
	case strings.HasPrefix(sel, "user:"):
		return len(n.Tags) == 0 && loginOf(n.User) == strings.TrimPrefix(sel, "user:")
	case strings.HasPrefix(sel, "host:"):
		return n.Hostinfo.Hostname() == strings.TrimPrefix(sel, "host:")
	}
	return false
}

func loginOf(id tailcfg.UserID) string { return fmt.Sprintf("user-%d@%s", id, loginDomain) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing response: %v", err)
	}
}

// quietTB is the testing.TB that integration.RunDERPAndSTUN wants outside a test: failures end
// the program, cleanups never run (the servers live as long as the process).
type quietTB struct{ *testing.T }

func (quietTB) Helper()                         {}
func (quietTB) Cleanup(func())                  {}
func (quietTB) Logf(format string, args ...any) { log.Printf(format, args...) }
func (quietTB) Log(args ...any)                 { log.Print(args...) }
func (quietTB) Fatal(args ...any)               { log.Fatal(args...) }
func (quietTB) Fatalf(format string, args ...any) {
	log.Fatalf(format, args...)
}
func (quietTB) Error(args ...any)                 { log.Fatal(args...) }
func (quietTB) Errorf(format string, args ...any) { log.Fatalf(format, args...) }
func (quietTB) Failed() bool                      { return false }
func (quietTB) Name() string                      { return "kubescribe-control" }
