// Package swap turns hot-plugged disks and guest files into swap areas
// (AddSwap, AddSwapPath). The guest has no mkswap: the package writes the
// kernel's swap header itself (version 1, one page long, for the guest's
// page size), but only on an area that is blank; an area that already
// carries a swap signature (the Kata runtime runs mkswap on the host
// before hot-plugging) is used as it is, and anything else is refused
// rather than overwritten. Then swapon(2) adds the area.
//
// Areas are opened once as O_PATH handles and every later step (the
// header write, swapon) goes through /proc/self/fd of that handle, so a
// path cannot be swapped for a symlink between checking and using it.
package swap
