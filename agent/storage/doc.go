// Package storage mounts the filesystems the runtime shares with or asks
// of the guest (Kata's Storage messages): virtio-fs and 9p shares, local
// directories, tmpfs and hugetlbfs, bind mounts, block devices and overlay
// filesystems. Mounts are reference-counted by mount point across owners
// (the sandbox and each container), so a point shared by two containers is
// unmounted only when the last of them releases it. Every mount point must
// lie under one configured root (/run/kata-containers in the guest).
package storage
