# img-basic.sh - `appliance img` commands driven as a user would.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

t_run "create raw" $A img create -f raw disk.raw 10M
t_check "raw file has the size" [ "$(stat -c %s disk.raw)" = 10485760 ]
printf 'hello world' > in.bin
t_run "write at offset" sh -c "$A img write disk.raw 1M 11 < in.bin"
t_check "read it back" [ "$($A img read disk.raw 1M 11)" = "hello world" ]
t_check "info --json names the format" sh -c "$A img info --json disk.raw | grep -q '\"format\": \"raw\"'"
t_check "map shows data at 1M" sh -c "$A img map disk.raw | grep -q '^1048576 .*data'"
t_fail "read past the end fails" 1 $A img read disk.raw 10M 1
t_fail "bad size is a usage error" 2 $A img create -f raw other.raw 12Q
t_fail "unknown subcommand is a usage error" 2 $A img frobnicate
t_fail "missing file fails" 1 $A img info nonexistent.img
t_run "help img" $A help img

# Files an image names are the image's choice, not the user's: a hostile
# image must not make us wait on a FIFO or read a device (a host disk,
# /dev/zero without end) into a guest or a converted copy.  `timeout`
# turns the old hang into exit 124.
mkfifo fifo
qemu-img create -q -u -f qcow2 -b "$PWD/fifo" -F raw on-fifo.qcow2 1M
qemu-img create -q -u -f qcow2 -b /dev/zero -F raw on-zero.qcow2 1M
t_fail "a backing file that is a FIFO is refused, not waited on" 1 \
	timeout 20 $A img info on-fifo.qcow2
t_check "  ... and the error says what it is" sh -c \
	"timeout 20 $A img info on-fifo.qcow2 2>&1 | grep -q 'fifo is a FIFO; a file an image names'"
t_fail "a backing file that is a device is refused" 1 \
	timeout 20 $A img read on-zero.qcow2 0 512
t_check "  ... naming it" sh -c \
	"timeout 20 $A img convert -O avd on-zero.qcow2 copy.avd 2>&1 | grep -q '/dev/zero is a character device'"
t_check "  ... and nothing is written" [ ! -e copy.avd ]
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "fifo" 0\n' > on-fifo.vmdk
t_fail "a VMDK extent that is a FIFO is refused" 1 \
	timeout 20 $A img info on-fifo.vmdk
t_fail "the user naming a FIFO gets an error, not a wait" 1 \
	timeout 20 $A img info fifo
t_check "  ... saying what it is" sh -c \
	"timeout 20 $A img info fifo 2>&1 | grep -q 'is a FIFO, not a regular file or a block device'"

# Names an image chooses reach the terminal escaped: a backing file name
# with an escape sequence in it (which could rewrite what the terminal
# shows) prints as \x1b, in info's output and in error messages alike.
ESC=$(printf '\033')
touch "esc${ESC}[2Jname.raw"
qemu-img create -q -f qcow2 -b "$PWD/esc${ESC}[2Jname.raw" -F raw esc.qcow2 1M
$A img info esc.qcow2 > esc-info.out 2>&1
t_check "img info shows an image's backing file name with its escape escaped" \
	sh -c "grep -q 'backing file: .*esc\\\\x1b\\[2Jname.raw' esc-info.out && ! grep -q '$ESC' esc-info.out"
rm -f "esc${ESC}[2Jname.raw"
$A img info esc.qcow2 > esc-err.out 2>&1
t_check "  ... and so does the error when it is missing" \
	sh -c "grep -q 'esc\\\\x1b\\[2Jname.raw' esc-err.out && ! grep -q '$ESC' esc-err.out"
# Bytes that are not UTF-8, and C1 controls (U+009B is a one-character
# CSI to some terminals): escaped in text, and --json stays valid JSON.
BAD=$(printf 'bad\377\302\233x')
touch "$BAD.raw"
qemu-img create -q -f qcow2 -b "$PWD/$BAD.raw" -F raw bad.qcow2 1M
$A img info bad.qcow2 > bad-info.out 2>&1
t_check "img info escapes a name's invalid UTF-8 and C1 controls" \
	grep -q 'bad\\xff\\xc2\\x9bx.raw' bad-info.out
$A img info --json bad.qcow2 > bad-info.json 2>&1
t_check "  ... and --json of it parses, with U+FFFD for the bad byte" \
	python3 -c "import json,sys; d=json.load(open('bad-info.json', encoding='utf-8')); sys.exit(d['backing-filename'].endswith('bad\ufffd\u009bx.raw') is False)"
t_done
