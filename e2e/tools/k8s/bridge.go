package main

// netns-bridge joins the host's loopback and the real node's network namespace
// without giving the host namespace a single new address, route or rule.
//
// A socket belongs to the network namespace of the thread that created it, not
// of the thread that uses it. So this process lives in the host namespace and,
// for each socket that must exist on the node's side, locks a goroutine to its
// OS thread, enters the node namespace (setns), creates the socket and returns.
// The kernel then carries each end in its own namespace; the bridge only copies
// bytes between them.
//
//	--forward ns:10.250.0.2:26443=host:127.0.0.1:26443
//	    listen inside the namespace, connect on the host (kubelet, kube-proxy
//	    and pods reach the API server, which binds 127.0.0.1 only)
//	--forward host:127.0.0.1:8080=ns:10.96.0.10:80
//	    listen on the host's loopback, connect inside the namespace
//	--proxy-unix PATH, --proxy-tcp 127.0.0.1:PORT
//	    an HTTP proxy (CONNECT and absolute-form requests) whose upstream
//	    connections are dialled inside the namespace, except those to loopback
//	    addresses, which stay on the host (where the control plane and the kwok
//	    nodes live): the API server's egress selector uses it for kubelet and
//	    pod traffic, tests and Prometheus use it to reach pod and Service IPs
//	    exactly as a pod on the node would.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type endpoint struct {
	ns   bool // inside the node namespace, else the host's
	addr string
}

func parseEndpoint(s string) (endpoint, error) {
	side, addr, ok := strings.Cut(s, ":")
	if !ok || (side != "ns" && side != "host") {
		return endpoint{}, fmt.Errorf("%q: want ns:HOST:PORT or host:HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return endpoint{}, fmt.Errorf("%q: %v", s, err)
	}
	return endpoint{ns: side == "ns", addr: addr}, nil
}

type bridge struct {
	nsPath string
	hostNS int // fd of the namespace every unlocked thread is in
}

// inNS runs fn on a thread that has entered the node's network namespace.
func (b *bridge) inNS(fn func() error) error {
	runtime.LockOSThread()
	target, err := unix.Open(b.nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open %s: %w", b.nsPath, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", b.nsPath, err)
	}
	ferr := fn()
	if err := unix.Setns(b.hostNS, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the node namespace: leave it locked, so the
		// Go runtime ends it with this goroutine instead of reusing it.
		log.Printf("setns back to the host namespace: %v (thread retired)", err)
		return ferr
	}
	runtime.UnlockOSThread()
	return ferr
}

func (b *bridge) listen(e endpoint) (net.Listener, error) {
	if !e.ns {
		return net.Listen("tcp", e.addr)
	}
	var l net.Listener
	err := b.inNS(func() (err error) { l, err = net.Listen("tcp", e.addr); return })
	return l, err
}

func (b *bridge) dial(ctx context.Context, ns bool, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !ns {
		return d.DialContext(ctx, network, addr)
	}
	// The socket is created (and the non-blocking connect started) on the
	// namespaced thread; completion is awaited by the poller on any thread.
	var c net.Conn
	err := b.inNS(func() (err error) { c, err = d.DialContext(ctx, network, addr); return })
	return c, err
}

func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src) //nolint:errcheck // either side closing ends the pair
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite() //nolint:errcheck
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

func (b *bridge) forward(l net.Listener, to endpoint) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("accept %s: %v", l.Addr(), err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go func() {
			up, err := b.dial(context.Background(), to.ns, "tcp", to.addr)
			if err != nil {
				log.Printf("forward %s -> %s: %v", l.Addr(), to.addr, err)
				c.Close()
				return
			}
			splice(c, up)
		}()
	}
}

// proxy is an HTTP proxy whose upstream connections are dialled in the node's
// namespace: CONNECT tunnels (TLS to kubelets, kubectl exec/port-forward) and
// plain absolute-form requests (Prometheus' proxy_url, curl -x).
func (b *bridge) proxy() http.Handler {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return b.dial(ctx, !isLoopback(addr), network, addr)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.Out.URL = r.In.URL; r.Out.Host = r.In.Host },
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "netns-bridge: "+err.Error(), http.StatusBadGateway)
		},
		FlushInterval: -1,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			if r.URL.Host == "" {
				http.Error(w, "netns-bridge: proxy requests need an absolute URL", http.StatusBadRequest)
				return
			}
			rp.ServeHTTP(w, r)
			return
		}
		up, err := b.dial(r.Context(), !isLoopback(r.Host), "tcp", r.Host)
		if err != nil {
			http.Error(w, "netns-bridge: "+err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			up.Close()
			http.Error(w, "netns-bridge: cannot hijack", http.StatusInternalServerError)
			return
		}
		c, rw, err := hj.Hijack()
		if err != nil {
			up.Close()
			return
		}
		if _, err := rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n"); err == nil {
			err = rw.Flush()
		}
		// Bytes the client sent after its CONNECT line are already buffered.
		if n := rw.Reader.Buffered(); n > 0 {
			buf, _ := rw.Reader.Peek(n)
			up.Write(buf) //nolint:errcheck
		}
		splice(c, up)
	})
}

func netnsBridge(args []string) int {
	fs := flag.NewFlagSet("netns-bridge", flag.ContinueOnError)
	nsPath := fs.String("netns", "", "path of the node's network namespace (e.g. /proc/PID/ns/net)")
	var forwards multiFlag
	fs.Var(&forwards, "forward", "LISTEN=CONNECT, each ns:HOST:PORT or host:HOST:PORT (repeatable)")
	proxyUnix := fs.String("proxy-unix", "", "serve the namespace proxy on this unix socket")
	proxyTCP := fs.String("proxy-tcp", "", "serve the namespace proxy on this host address (loopback)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log.SetPrefix("netns-bridge: ")
	if *nsPath == "" {
		log.Print("--netns is required")
		return 2
	}
	host, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Print(err)
		return 1
	}
	b := &bridge{nsPath: *nsPath, hostNS: host}

	var closers []io.Closer
	for _, f := range forwards {
		from, to, ok := strings.Cut(f, "=")
		if !ok {
			log.Printf("--forward %q: want LISTEN=CONNECT", f)
			return 2
		}
		lf, err1 := parseEndpoint(from)
		tf, err2 := parseEndpoint(to)
		if err := errors.Join(err1, err2); err != nil {
			log.Printf("--forward: %v", err)
			return 2
		}
		if !lf.ns && !isLoopback(lf.addr) {
			log.Printf("--forward %q: host listeners must be on loopback", f)
			return 2
		}
		l, err := b.listen(lf)
		if err != nil {
			log.Printf("listen %s: %v", from, err)
			return 1
		}
		closers = append(closers, l)
		log.Printf("forwarding %s -> %s", from, to)
		go b.forward(l, tf)
	}
	serve := func(network, addr string) error {
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		closers = append(closers, l)
		log.Printf("proxy on %s %s", network, addr)
		srv := &http.Server{Handler: b.proxy(), ReadHeaderTimeout: 30 * time.Second}
		go srv.Serve(l) //nolint:errcheck
		return nil
	}
	if *proxyUnix != "" {
		os.Remove(*proxyUnix)
		if err := serve("unix", *proxyUnix); err != nil {
			log.Print(err)
			return 1
		}
	}
	if *proxyTCP != "" {
		if !isLoopback(*proxyTCP) {
			log.Printf("--proxy-tcp %q must be on loopback", *proxyTCP)
			return 2
		}
		if err := serve("tcp", *proxyTCP); err != nil {
			log.Print(err)
			return 1
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, c := range closers {
		c.Close()
	}
	if *proxyUnix != "" {
		os.Remove(*proxyUnix)
	}
	return 0
}

func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
