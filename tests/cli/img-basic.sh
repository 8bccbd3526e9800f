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
t_done
