// audit-sink: a test peer that checks kubescribe's audit export with the real
// k8s.io/apiserver/pkg/apis/audit/v1 types (never part of the product).
//
//	audit-sink serve -listen 127.0.0.1:0 -out events.jsonl
//	    An audit webhook receiver. Every POSTed body is decoded strictly as an
//	    audit.k8s.io/v1 EventList (unknown, duplicate, mis-cased or mistyped
//	    fields are errors): on success its events are appended to -out, one
//	    JSON object per line, and 200 is answered; otherwise 400 and a log
//	    line. It prints "listening on ADDR" once ready. For fault tests:
//	    POST /control/fail (answer 500 to every batch), /control/stall?ms=N
//	    (wait N ms before each answer), /control/ok (back to normal);
//	    GET /control/stats gives {"batches":N,"events":N,"rejected":N}.
//	audit-sink check FILE
//	    Decodes every line of FILE strictly as an audit.k8s.io/v1 Event and
//	    prints the number of events; exits 1 at the first line that does not.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	sigsjson "sigs.k8s.io/json"
)

func strict(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return fmt.Errorf("strict decoding: %v", strictErrs)
	}
	return nil
}

type sink struct {
	mu       sync.Mutex
	out      *os.File
	fail     bool
	stall    time.Duration
	batches  int
	events   int
	rejected int
}

func (s *sink) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	fail, stall := s.fail, s.stall
	s.mu.Unlock()
	if stall > 0 {
		time.Sleep(stall)
	}
	if fail {
		http.Error(w, "told to fail", http.StatusInternalServerError)
		return
	}
	var list auditv1.EventList
	if err := strict(body, &list); err != nil {
		log.Printf("rejected a batch: %v", err)
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
		log.Printf("rejected a batch: kind %q apiVersion %q", list.Kind, list.APIVersion)
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		http.Error(w, "not an audit.k8s.io/v1 EventList", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range list.Items {
		line, err := json.Marshal(&list.Items[i])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := s.out.Write(append(line, '\n')); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if err := s.out.Sync(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.batches++
	s.events += len(list.Items)
	w.WriteHeader(http.StatusOK)
}

func (s *sink) control(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/control/fail":
		s.fail = true
	case "/control/ok":
		s.fail, s.stall = false, 0
	case "/control/stall":
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			http.Error(w, "ms: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.stall = time.Duration(ms) * time.Millisecond
	case "/control/stats":
		_ = json.NewEncoder(w).Encode(map[string]int{"batches": s.batches, "events": s.events, "rejected": s.rejected})
		return
	default:
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	outPath := fs.String("out", "", "file the received events are appended to")
	_ = fs.Parse(args)
	if *outPath == "" {
		log.Fatal("serve: -out is required")
	}
	out, err := os.OpenFile(*outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	s := &sink{out: out}
	mux := http.NewServeMux()
	mux.HandleFunc("/control/", s.control)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an EventList", http.StatusMethodNotAllowed)
			return
		}
		s.receive(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

func check(args []string) {
	if len(args) != 1 {
		log.Fatal("check: want one FILE")
	}
	f, err := os.Open(args[0])
	if err != nil {
		log.Fatal(err)
	}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for scanner.Scan() {
		var event auditv1.Event
		if err := strict(scanner.Bytes(), &event); err != nil {
			fmt.Fprintf(os.Stderr, "line %d: %v\n", n+1, err)
			os.Exit(1)
		}
		if event.Kind != "Event" || event.APIVersion != "audit.k8s.io/v1" {
			fmt.Fprintf(os.Stderr, "line %d: kind %q apiVersion %q\n", n+1, event.Kind, event.APIVersion)
			os.Exit(1)
		}
		n++
	}
	if err := scanner.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
}

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: audit-sink serve|check ...")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "check":
		check(os.Args[2:])
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}
