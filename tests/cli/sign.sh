# sign.sh - `appliance key/sign/verify/trust`, and interop with Debian's
# minisign in both directions (its keys and signatures used by us, ours by
# it).  Needs the minisign package (make deps).
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
export APPLIANCE_TRUST_DIR="$T_TMP/trust-user"
export APPLIANCE_SYSTEM_TRUST_DIR="$T_TMP/trust-system"
unset APPLIANCE_PASSPHRASE

if ! command -v minisign >/dev/null 2>&1; then
	t_failed "minisign is installed (make deps)"
	t_done
fi

# Fails the test if the last command's stderr (err.txt) lacks $1.
said() { grep -q -- "$1" err.txt; }

head -c 3000000 /dev/urandom > big.bin
printf 'hello\n' > small.txt

# ---- our keys, our signatures, checked by minisign ----
t_run "generate an unencrypted key" \
	$A key generate --public ours.pub --secret ours.key --no-passphrase
t_check "secret key file is mode 0600" [ "$(stat -c %a ours.key)" = 600 ]
t_fail "refuses to overwrite a key" 1 \
	$A key generate --public ours.pub --secret ours.key --no-passphrase
OURS=$($A key id ours.pub)
t_check "key id is minisign's (16 hex digits, in the comment)" \
	sh -c "echo '$OURS' | grep -qE '^[0-9A-F]{16}$' && grep -q 'public key $OURS' ours.pub"
t_run "key public rewrites the public key" \
	$A key public --secret ours.key --public again.pub
t_check "identical to the original" cmp -s ours.pub again.pub
t_fail "key public keeps an existing file" 1 \
	$A key public --secret ours.key --public again.pub
t_run "sign two files" $A sign --key ours.key --trusted-comment "release 1.0" \
	small.txt big.bin
t_run "minisign verifies our signature" minisign -Vm small.txt -p ours.pub
t_check "minisign sees our trusted comment" \
	sh -c "minisign -Vm big.bin -p ours.pub | grep -q 'Trusted comment: release 1.0'"
t_run "we verify our signature" $A verify --key ours.pub big.bin
t_check "verify prints the trusted comment" \
	sh -c "$A verify --key ours.pub small.txt | grep -qx 'trusted comment: release 1.0'"
t_run "signature read from a pipe" \
	sh -c "cat small.txt.minisig | $A verify --key ours.pub --sig /dev/stdin small.txt"
$A sign --key ours.key --sig esc.sig --trusted-comment "$(printf 'a\033[31mb')" small.txt >/dev/null
t_check "control bytes in a trusted comment are shown escaped" \
	sh -c "$A verify --key ours.pub --sig esc.sig small.txt | grep -qF 'trusted comment: a\\x1b[31mb'"
cp small.txt.minisig first.minisig
$A sign --key ours.key --trusted-comment "release 1.0" small.txt >/dev/null
t_check "signing again gives the same bytes" cmp -s first.minisig small.txt.minisig
t_run "default trusted comment is minisign's style" \
	$A sign --key ours.key --sig dflt.minisig small.txt
t_check "it names the file and the time" \
	grep -qE '^trusted comment: timestamp:[0-9]+	file:small.txt	hashed$' dflt.minisig

# ---- an encrypted key of ours ----
printf 'correct horse\n' > pass.txt
t_run "generate an encrypted key (passphrase file)" \
	$A key generate --public enc.pub --secret enc.key \
	--passphrase-file pass.txt --kdf interactive --comment "test key"
t_check "comment is on the key files" grep -q '^untrusted comment: test key$' enc.pub
t_run "key public of an encrypted key" \
	$A key public --secret enc.key --public enc2.pub --passphrase-file pass.txt
t_check "gives the same key" [ "$(tail -n 1 enc.pub)" = "$(tail -n 1 enc2.pub)" ]
t_run "sign with it (passphrase file)" \
	$A sign --key enc.key --passphrase-file pass.txt --sig enc1.sig --trusted-comment tc small.txt
t_run "sign with it (APPLIANCE_PASSPHRASE)" \
	env APPLIANCE_PASSPHRASE='correct horse' $A sign --key enc.key --sig enc2.sig \
	--trusted-comment tc small.txt
t_check "both signatures are the same" cmp -s enc1.sig enc2.sig
APPLIANCE_PASSPHRASE=wrong $A sign --key enc.key --sig enc3.sig small.txt 2>err.txt
t_check "wrong passphrase is refused clearly" said "wrong passphrase"
t_check "and writes no signature" [ ! -e enc3.sig ]
# setsid: no controlling terminal, so nothing can prompt.
setsid -w $A sign --key enc.key --sig enc4.sig small.txt 2>err.txt </dev/null
t_check "no passphrase source and no terminal: clear error" said "a passphrase is needed"
t_run "minisign verifies the encrypted key's signature" \
	minisign -Vm small.txt -x enc1.sig -p enc.pub
t_run "minisign signs with our encrypted key (password on stdin)" \
	sh -c "printf 'correct horse\n' | minisign -S -s enc.key -m small.txt -x ms-enc.sig"
t_run "minisign signs with our unencrypted key" \
	minisign -S -s ours.key -m small.txt -x ms-ours.sig -t "via minisign"
t_run "we verify those" sh -c "$A verify --key enc.pub --sig ms-enc.sig small.txt && \
	$A verify --key ours.pub --sig ms-ours.sig small.txt"

# ---- passphrase asked on a terminal (script(1) gives us a pty) ----
# timeout: a prompt that lost its input must fail the test, not hang it.
if command -v script >/dev/null 2>&1; then
	printf 'tty pass\ntty pass\n' | timeout 120 script -qec \
		"$A key generate --public tty.pub --secret tty.key --kdf interactive" \
		/dev/null >tty.out 2>&1
	t_check "terminal: asked twice, key written" \
		sh -c "grep -q 'Passphrase (again)' tty.out && [ -s tty.key ]"
	printf 'tty pass\n' | timeout 120 script -qec \
		"$A sign --key tty.key --sig tty.sig small.txt" /dev/null >/dev/null 2>&1
	t_run "terminal: the passphrase unlocks the key" \
		$A verify --key tty.pub --sig tty.sig small.txt
	printf 'one\ntwo\n' | timeout 120 script -qec \
		"$A key generate --public tty2.pub --secret tty2.key --kdf interactive" \
		/dev/null >tty.out 2>&1
	t_check "terminal: different passphrases are refused" \
		sh -c "grep -q 'do not match' tty.out && [ ! -e tty2.key ]"
	# Ctrl-C at the prompt must give the terminal its echo back.
	timeout 120 script -qec "sh -c '$A key generate --public int.pub \
		--secret int.key & p=\$!; sleep 2; kill -INT \$p; wait \$p; \
		echo rc=\$?; stty -a'" /dev/null </dev/null >tty.out 2>&1
	t_check "terminal: interrupted prompt restores echo" \
		sh -c "grep -q 'rc=130' tty.out && grep -qw -- 'echo' tty.out && \
		! grep -qw -- '-echo' tty.out"
fi

# ---- minisign's keys and signatures, used by us ----
t_run "minisign -G -W (unencrypted key)" minisign -G -W -p ms.pub -s ms.key
MS=$($A key id ms.pub)
t_run "we sign with minisign's unencrypted key" \
	$A sign --key ms.key --trusted-comment "by ms key" --sig a1.sig small.txt
t_run "minisign verifies it" minisign -Vm small.txt -x a1.sig -p ms.pub
t_run "minisign -G with a password (read from stdin)" \
	sh -c "printf 'pw one\npw one\n' | minisign -G -p mse.pub -s mse.key"
t_run "we sign with minisign's encrypted key" \
	env APPLIANCE_PASSPHRASE='pw one' $A sign --key mse.key --sig a2.sig big.bin
t_run "minisign verifies it" minisign -Vm big.bin -x a2.sig -p mse.pub
t_run "minisign -S (prehashed) signature" \
	minisign -S -m big.bin -s ms.key -t "from minisign" -x big.ms.sig
t_run "we verify minisign's signature" $A verify --key ms.pub --sig big.ms.sig big.bin
t_check "and print its trusted comment" \
	sh -c "$A verify --key ms.pub --sig big.ms.sig big.bin | grep -qx 'trusted comment: from minisign'"
t_run "minisign -S -l (legacy) signature" \
	minisign -S -l -m small.txt -s ms.key -x legacy.sig
t_run "we verify legacy signatures too" $A verify --key ms.pub --sig legacy.sig small.txt

# ---- rejections ----
cp big.bin tampered.bin
cp big.bin.minisig tampered.bin.minisig
flip_byte tampered.bin 1000000
$A verify --key ours.pub tampered.bin >/dev/null 2>err.txt
t_check "tampered file: exit 1" [ $? = 1 ]
t_check "tampered file: clear message" said "data was modified"
sed '3s/release 1.0/release 2.0/' small.txt.minisig > tc.sig
$A verify --key ours.pub --sig tc.sig small.txt >/dev/null 2>err.txt
t_check "tampered trusted comment: exit 1" [ $? = 1 ]
t_check "tampered trusted comment: clear message" said "trusted comment was tampered"
t_fail "minisign agrees it is tampered" 1 minisign -Vm small.txt -x tc.sig -p ours.pub
$A verify --key ms.pub small.txt >/dev/null 2>err.txt
t_check "wrong key: exit 1" [ $? = 1 ]
t_check "wrong key: names both key ids" \
	said "made by key $OURS, not by the given key $MS"
sed '2s/^RU/RX/' small.txt.minisig > alg.sig
$A verify --key ours.pub --sig alg.sig small.txt >/dev/null 2>err.txt
t_check "unknown algorithm tag is named" said "unsupported signature algorithm"
printf 'untrusted comment: x\nnot base64!\n' > junk.sig
t_fail "garbage signature file" 1 $A verify --key ours.pub --sig junk.sig small.txt
t_fail "missing signature file" 1 $A verify --key ours.pub nothere.txt
t_fail "verify without FILE is a usage error" 2 $A verify
t_fail "sign without --key is a usage error" 2 $A sign small.txt
t_fail "unknown key subcommand" 2 $A key frobnicate

# ---- trust store ----
$A verify small.txt >/dev/null 2>err.txt
t_check "unknown signer: exit 1" [ $? = 1 ]
t_check "unknown signer: says the key is not trusted" said "$OURS, which is not in the trust store"
t_run "trust add" $A trust add ours.pub
t_check "stored under its key id" [ -f "$APPLIANCE_TRUST_DIR/$OURS.pub" ]
t_run "trust add --system" $A trust add --system ms.pub
t_check "system store file" [ -f "$APPLIANCE_SYSTEM_TRUST_DIR/$MS.pub" ]
t_run "adding again is fine" $A trust add ours.pub
t_check "trust list shows both" \
	sh -c "$A trust list | grep -q '^$OURS  user' && $A trust list | grep -q '^$MS  system'"
t_check "trust list --json" sh -c "$A trust list --json | grep -q '\"key_id\": \"$MS\"'"
t_run "verify with the trust store" $A verify small.txt
t_run "verify minisign's signature via the system store" \
	$A verify --sig big.ms.sig big.bin
t_check "verify --json" sh -c "$A verify --json small.txt | grep -q '\"valid\": true'"
t_check "stored key works with minisign itself" \
	minisign -Vm small.txt -p "$APPLIANCE_TRUST_DIR/$OURS.pub" -q
$A trust remove "$MS" 2>err.txt
t_check "removing a system key from the user store fails clearly" said "system"
t_run "trust remove KEYID" $A trust remove "$OURS"
t_run "trust remove --system FILE" $A trust remove --system ms.pub
t_fail "verify after removal fails" 1 $A verify small.txt
t_check "trust list is empty" [ -z "$($A trust list)" ]

for c in key sign verify trust; do
	t_check "help $c" sh -c "$A help $c | grep -q usage"
done
t_done
