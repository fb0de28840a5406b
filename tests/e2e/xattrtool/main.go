// Command xattrtool sets and reads extended attributes. The end-to-end
// suite copies it (static, CGO_ENABLED=0) into a busybox container rootfs,
// which has no setfattr/getfattr. Errors go to stdout too: the suite reads
// only a process's stdout.
//
//	xattrtool set PATH NAME VALUE
//	xattrtool get PATH NAME
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 4 && args[0] == "set":
		if err := syscall.Setxattr(args[1], args[2], []byte(args[3]), 0); err != nil {
			return fmt.Errorf("setxattr %s %s: %w", args[1], args[2], err)
		}
		return nil
	case len(args) == 3 && args[0] == "get":
		buf := make([]byte, 64<<10)
		n, err := syscall.Getxattr(args[1], args[2], buf)
		if err != nil {
			return fmt.Errorf("getxattr %s %s: %w", args[1], args[2], err)
		}
		fmt.Printf("%s", buf[:n])
		return nil
	}
	return fmt.Errorf("usage: xattrtool set PATH NAME VALUE | get PATH NAME")
}
