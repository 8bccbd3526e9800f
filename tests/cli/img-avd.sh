# img-avd.sh - the AVD format through `appliance img`, as a user would:
# create, write, read, info --json, map, check, commit, rebase, compact.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

head -c 3000000 /dev/urandom > base.bin
head -c 70000 /dev/urandom > patch.bin
# What the overlay should read as after the patch at 100000.
{ head -c 100000 base.bin; cat patch.bin; tail -c +170001 base.bin; } > want.bin

t_run "create base" $A img create base.avd 3000000
t_run "write base" sh -c "$A img write base.avd 0 3000000 < base.bin"
t_check "base reads back" sh -c "$A img read base.avd 0 3000000 | cmp -s - base.bin"
t_check "info --json: format avd" sh -c "$A img info --json base.avd | grep -q '\"format\": \"avd\"'"
t_check "info --json: 64 KiB clusters" sh -c "$A img info --json base.avd | grep -q '\"cluster-size\": 65536'"
t_check "info --json: clean" sh -c "$A img info --json base.avd | grep -q '\"dirty\": false'"
t_check "info --json: uuid" sh -c "$A img info --json base.avd | grep -q '\"uuid\": \"'"
t_run "check base" $A img check base.avd

t_run "create overlay" $A img create -b base.avd -F avd top.avd
t_check "overlay has the base's size" sh -c "$A img info --json top.avd | grep -q '\"virtual-size\": 3000000'"
t_check "overlay maps as backing" sh -c "$A img map top.avd | grep -q '^0 .*backing'"
t_run "write overlay" sh -c "$A img write top.avd 100000 70000 < patch.bin"
t_check "overlay reads base + patch" sh -c "$A img read top.avd 0 3000000 | cmp -s - want.bin"
t_check "map shows data at 65536" sh -c "$A img map top.avd | grep -q '^65536 .*data'"
t_check "map --json" sh -c "$A img map --json top.avd | grep -q '\"kind\": \"backing\"'"
t_check "base unchanged" sh -c "$A img read base.avd 0 3000000 | cmp -s - base.bin"

t_fail "compact refuses an existing destination" 1 $A img compact top.avd base.avd
t_run "compact" $A img compact top.avd small.avd
t_check "compact keeps the content" sh -c "$A img read small.avd 0 3000000 | cmp -s - want.bin"
t_run "compact -c --level 5" $A img compact -c --level 5 top.avd smallc.avd
t_check "compressed compact reads the same" sh -c "$A img read smallc.avd 0 3000000 | cmp -s - want.bin"
t_run "check compacted" $A img check smallc.avd

t_run "rebase onto nothing" $A img rebase -b "" small.avd
t_check "rebased image has no backing file" sh -c "! $A img info small.avd | grep -q 'backing file'"
t_check "rebased image keeps the content" sh -c "$A img read small.avd 0 3000000 | cmp -s - want.bin"
t_run "rebase -u back onto base" $A img rebase -u -b base.avd -F avd small.avd
t_check "unsafe rebase names the base" sh -c "$A img info --json small.avd | grep -q '\"backing-filename\": \"base.avd\"'"
t_fail "rebase without -b is a usage error" 2 $A img rebase small.avd

t_run "commit" $A img commit top.avd
t_check "base now holds the patch" sh -c "$A img read base.avd 0 3000000 | cmp -s - want.bin"
t_check "overlay is empty" sh -c "[ \$($A img map top.avd | grep -c data) = 0 ]"
t_check "overlay still reads the same" sh -c "$A img read top.avd 0 3000000 | cmp -s - want.bin"
t_run "check after commit" $A img check top.avd
t_fail "commit without a backing file fails" 1 $A img commit base.avd

t_run "resize +1G" $A img resize base.avd +1G
t_check "resized" sh -c "$A img info --json base.avd | grep -q '\"virtual-size\": 1076741824'"
t_check "data survives resize" sh -c "$A img read base.avd 0 3000000 | cmp -s - want.bin"

# A flipped data byte: reads fail, check counts it and exits 1.
off=$($A img map base.avd | awk '$3 == "data" { print $4; exit }')
t_check "found a data cluster" [ -n "$off" ]
byte=$(od -An -tu1 -j $((off + 10)) -N1 base.avd | tr -d ' ')
flip_byte base.avd $((off + 10))
t_check "the byte changed" [ "$(od -An -tu1 -j $((off + 10)) -N1 base.avd | tr -d ' ')" != "$byte" ]
t_fail "read of a corrupt block fails" 1 $A img read base.avd 0 4096
t_fail "check finds the checksum error" 1 $A img check base.avd
t_check "check names it" sh -c "$A img check base.avd | grep -q '1 checksum errors'"
t_done
