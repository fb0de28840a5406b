package hotplug

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WantsUevent reports whether HandleUevent acts on events with this action
// and subsystem; main passes it to the uevent listener's subscription
// filter so that other events never reach this package.
func (o *Onliner) WantsUevent(action, subsystem string) bool {
	switch subsystem {
	case "memory":
		return action == "add"
	case "cpu":
		return o.cpuOnAdd && action == "add"
	}
	return false
}

// HandleUevent onlines a memory block as soon as the kernel announces it
// ("add", subsystem "memory", devpath /devices/system/memory/memoryN), and a
// CPU likewise when CPUs are onlined on "add". Other events are ignored.
// Failures are logged: there is nobody to answer.
func (o *Onliner) HandleUevent(action, subsystem, devpath string) {
	if err := o.handleUevent(action, subsystem, devpath); err != nil {
		o.log.Warn("hot-plug uevent", "action", action, "subsystem", subsystem, "devpath", devpath, "error", err)
	}
}

func (o *Onliner) handleUevent(action, subsystem, devpath string) error {
	switch subsystem {
	case "memory":
		n, ok := devNumber(devpath, "/devices/system/memory/memory")
		if !ok || action != "add" {
			return nil
		}
		name := fmt.Sprintf("memory%d", n)
		o.mu.Lock()
		changed, err := o.onlineBlock(name)
		o.mu.Unlock()
		if changed {
			o.log.Info("onlined hot-plugged memory block", "block", name, "type", string(o.memType))
		}
		o.scheduleSweep()
		return err
	case "cpu":
		n, ok := devNumber(devpath, "/devices/system/cpu/cpu")
		if !ok || !o.cpuOnAdd || action != "add" {
			return nil
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		changed, err := o.onlineCPU(n)
		if changed {
			o.log.Info("onlined hot-plugged CPU", "cpu", n)
		}
		return err
	}
	return nil
}

// devNumber extracts N from a devpath of the form prefix+N, refusing
// anything else (extra path elements, signs, leading zeros).
func devNumber(devpath, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(devpath, prefix)
	if !ok || rest == "" || len(rest) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// scheduleSweep (re)arms the one-shot timer that onlines every offline
// memory block once uevents have been quiet for sweepDelay. It costs
// nothing at idle: no timer runs until the next memory uevent.
func (o *Onliner) scheduleSweep() {
	o.sweepMu.Lock()
	defer o.sweepMu.Unlock()
	if o.sweepTimer == nil {
		o.sweepTimer = time.AfterFunc(o.sweepDelay, o.sweep)
		return
	}
	o.sweepTimer.Reset(o.sweepDelay)
}

func (o *Onliner) sweep() {
	blocks, err := o.onlineMemory()
	if len(blocks) > 0 {
		o.log.Info("onlined memory blocks whose uevents were missed", "blocks", blocks, "type", string(o.memType))
	}
	if err != nil {
		o.log.Warn("memory sweep after hot-plug uevents", "error", err)
	}
}
