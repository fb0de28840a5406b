// Package storage mounts the filesystems the runtime shares with or asks
// of the guest (Kata's Storage messages): virtio-fs and 9p shares, local
// directories, tmpfs and hugetlbfs, bind mounts, block devices and overlay
// filesystems. Mounts are reference-counted by mount point across owners
// (the sandbox and each container), so a point shared by two containers is
// unmounted only when the last of them releases it. Every mount point must
// lie under one configured root (guestpath.KataRoot in the guest).
//
// # Goroutines and locks
//
// Manager.mu guards the table of mount points and is held across each
// mount and unmount (mountOne, drop), so two requests never race on one
// point; waiting for a block device (resolveDevice) happens before it is
// taken, so a slow hot-plug does not stall other storages. Mount and
// Release run on the caller's goroutine. UpdateEphemeral does not take
// Manager.mu: it remounts through a handle that must be a mount's root.
//
// The watcher mirrors watchable-bind storages. It is made on first use
// and its goroutine (loop, polling every WatchInterval) runs only while at
// least one storage is watched: add starts it, the remove of the last
// entry stops it. watcher.mu guards its entries, each entry's state and
// the watchable tmpfs, and is held through a whole poll (copies and the
// bind fallback).
//
// Lock order: Manager.mu, then watcher.mu. Mounting and releasing a
// watchable storage take watcher.mu while holding Manager.mu; the
// watcher's goroutine takes only watcher.mu and reads only the Manager's
// immutable configuration, never Manager.mu. FileCopier.mu (the copier's
// temporary files) is a leaf.
package storage
