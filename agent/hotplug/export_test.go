package hotplug

// stopSweep cancels a pending sweep (tests use it before their sysfs tree
// goes away).
func (o *Onliner) stopSweep() {
	o.sweepMu.Lock()
	defer o.sweepMu.Unlock()
	if o.sweepTimer != nil {
		o.sweepTimer.Stop()
	}
}
