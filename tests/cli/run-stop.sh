# run-stop.sh - how a run ends from outside, besides the console escape
# (run-escape.sh): its console's reader leaving (`appliance run ... |
# grep -m1 ready`), SIGHUP (the terminal or ssh session closing) and
# SIGKILL.  The first two stop the VM cleanly with status 0; none of them
# leaves anything of the run in $TMPDIR, or QEMU running.
#
# QEMU engine: the PVH test guest idling with a disk.  Builtin engine
# (needs a usable /dev/kvm): the test guest idling.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
G=$BUILD_ABS/tests/guest-pvh.elf

# wait_for FILE TEXT SECONDS: until FILE holds TEXT.
wait_for() {
	_n=0
	while ! grep -q "$2" "$1" 2>/dev/null && [ $_n -lt $(($3 * 10)) ]; do
		sleep 0.1; _n=$((_n + 1))
	done
	grep -q "$2" "$1" 2>/dev/null
}

if command -v qemu-system-x86_64 >/dev/null; then
	$A img create disk.avd 1M >/dev/null
	mkdir tmp

	# The reader leaves once it has what it wanted.  Before, QEMU went
	# on writing into the closed pipe and the pipeline waited for a
	# guest nobody could see (here: until the timeout, status 124).
	(TMPDIR=$T_TMP/tmp timeout 120 $A run --engine qemu --memory 64M \
		--kernel "$G" --disk disk.avd --append "console=ttyS0 idle" \
		2>err1; echo $? >st1) | grep -m1 'idle until stopped' >out1
	t_check "console closed: the run ends, status 0" [ "$(cat st1)" = 0 ]
	t_check "  ... the reader got its line" grep -q 'idle until stopped' out1
	t_check "  ... and says why it stopped" grep -q 'appliance: run: the console was closed; the VM was stopped' err1
	t_check "  ... nothing left in TMPDIR" [ -z "$(ls -A tmp)" ]
	t_check "  ... the disk is consistent" $A img check disk.avd

	TMPDIR=$T_TMP/tmp $A run --engine qemu --memory 64M --console out2 \
		--kernel "$G" --disk disk.avd --append "console=ttyS0 idle" \
		2>err2 &
	pid=$!
	t_check "SIGHUP: the guest is up" wait_for out2 'idle until stopped' 120
	t_check "  ... and the run has nothing named in TMPDIR" [ -z "$(ls -A tmp)" ]
	kill -HUP $pid
	wait $pid
	t_check "  ... stops it with status 0" [ $? = 0 ]
	t_check "  ... and says so" grep -q 'appliance: run: stopped by a signal' err2

	TMPDIR=$T_TMP/tmp $A run --engine qemu --memory 64M --console out3 \
		--kernel "$G" --disk disk.avd \
		--append "console=ttyS0 idle run-stop-kill-marker" 2>err3 &
	pid=$!
	t_check "SIGKILL: the guest is up" wait_for out3 'idle until stopped' 120
	kill -KILL $pid
	wait $pid 2>/dev/null
	n=0
	while pgrep -f 'run-stop-kill-marke[r]' >/dev/null && [ $n -lt 100 ]; do
		sleep 0.1; n=$((n + 1))
	done
	t_check "  ... QEMU goes with the run" sh -c "! pgrep -f 'run-stop-kill-marke[r]' >/dev/null"
	t_check "  ... nothing left in TMPDIR" [ -z "$(ls -A tmp)" ]
else
	echo "SKIP: no qemu-system-x86_64: QEMU-engine tests skipped"
fi

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "SKIP: no usable /dev/kvm: builtin-monitor test skipped"
	t_done
fi
(timeout 300 $A run --engine builtin --memory 64M \
	--kernel "$BUILD_ABS/tests/guest.bin" --append "idle" 2>err4; echo $? >st4) |
	grep -m1 'idle until stopped' >out4
t_check "builtin: a closed console ends the run, status 0" [ "$(cat st4)" = 0 ]
t_check "  ... and says why" grep -q 'appliance: run: the console was closed; the VM was stopped' err4
t_done
