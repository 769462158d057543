// go_echo PORT SECONDS: a Go TCP echo server, the shape of a Go network
// service: one goroutine per connection in the netpoller (epoll), a ticker
// goroutine that allocates and hashes every 100 ms (so the GC and its
// worker threads run), and the runtime's own threads and signals (SIGURG
// preemption of the busy goroutine below). Prints `ready <pid>`, one
// `tick <i> <hash>` line per tick, and `ok go_echo ticks=<n> conns=<n>`
// after SECONDS; any error is a `FAIL go_echo: ...` line on stderr and
// exit 1. The tick hashes depend only on i.
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL go_echo: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go_echo PORT SECONDS")
		os.Exit(2)
	}
	port, err1 := strconv.Atoi(os.Args[1])
	secs, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil || port < 1 || port > 65535 || secs < 1 {
		fail("bad arguments %q", os.Args[1:])
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		fail("listen: %v", err)
	}
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("accept: %v", err)
			}
			conns.Add(1)
			go func(c net.Conn) {
				defer c.Close()
				if _, err := io.Copy(c, c); err != nil {
					fail("echo: %v", err)
				}
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}(c)
		}
	}()
	// A goroutine that never yields on its own: the runtime preempts it with SIGURG.
	var spin atomic.Uint64
	go func() {
		x := uint64(1)
		for {
			x = x*6364136223846793005 + 1442695040888963407
			if x&0xfffff == 0 {
				spin.Add(1)
			}
		}
	}()
	fmt.Printf("ready %d\n", os.Getpid())
	ticks := secs * 10
	h := sha256.New()
	keep := make([][]byte, 0, 64)
	for i := 0; i < ticks; i++ {
		time.Sleep(100 * time.Millisecond)
		buf := make([]byte, 64*1024)
		for k := range buf {
			buf[k] = byte(i + k)
		}
		keep = append(keep, buf)
		if len(keep) > 32 {
			keep = keep[1:]
		}
		h.Write(buf[:16])
		fmt.Printf("tick %d %x\n", i, h.Sum(nil)[:8])
	}
	fmt.Printf("ok go_echo ticks=%d conns=%d\n", ticks, conns.Load())
}
