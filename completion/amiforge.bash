# bash completion for amiforge(1).  Installed as
# PREFIX/share/bash-completion/completions/amiforge; needs bash-completion.

_amiforge_commands="build plan validate status clean stages schema boot-test unbundle aws ami iam-policy version"
_amiforge_ami_subs="list create copy share expire deregister purge convert"
_amiforge_ami_common="--profile --region --all-regions --json --dry-run --help"

# The long options of a command ("ami SUB" for the ami subcommands).
_amiforge_options()
{
	case $1 in
	build) echo "--state --cache --set --from --fresh --json --remote --remote-required --remote-wait --region --profile --outputs-env --help" ;;
	plan) echo "--state --set --fresh --remote --json --region --profile --help" ;;
	validate) echo "--set --help" ;;
	status) echo "--state --set --remote --json --region --profile --help" ;;
	clean) echo "--state --all --set --remote --unused-for --dry-run --check --region --profile --help" ;;
	stages | schema | version) echo "--help" ;;
	boot-test) echo "--hvm --pvgrub --uefi --bios --user --accel --timeout --memory --imds --keep-logs --help" ;;
	unbundle) echo "--key --parts -o --help" ;;
	aws) echo "--service --region --date --profile --dry-run --unsigned-payload --header --data --include --help" ;;
	iam-policy) echo "--ami-commands --remote --list --help" ;;
	"ami list") echo "--name --tag --expired $_amiforge_ami_common" ;;
	"ami create") echo "--name --no-reboot --tag --expire-after --expires --copy-to --wait $_amiforge_ami_common" ;;
	"ami copy") echo "--to --source-region --name --kms-key --kernel-id --encrypted --source-profile --dest-account --copy-launch-permissions --wait $_amiforge_ami_common" ;;
	"ami share") echo "--account --org --ou --public --remove $_amiforge_ami_common" ;;
	"ami expire") echo "--in --at --never $_amiforge_ami_common" ;;
	"ami deregister") echo "--delete-snapshots --delete-bundle $_amiforge_ami_common" ;;
	"ami purge") echo "--expired --name --tag --keep-newest --older-than --orphan-snapshots --yes $_amiforge_ami_common" ;;
	"ami convert") echo "--key --cert --name --wait $_amiforge_ami_common" ;;
	esac
}

# The stage ids of RECIPE: `amiforge plan` knows the defaults (TYPE-2 for a
# second stage of a type); without a usable binary or when the recipe does
# not load, the `- TYPE:` and `id:` lines read as simply as awk can.
_amiforge_stage_ids()
{
	local prog=$1 recipe=$2 ids
	[[ -r $recipe ]] || return
	ids=$(AMIFORGE_REMOTE= "$prog" plan "$recipe" --state /nonexistent/amiforge-completion 2>/dev/null |
		awk '{print $2}')
	if [[ -z $ids ]]; then
		ids=$(awk '
			function flush() { if (type != "") print (id != "" ? id : (n[type]++ ? type "-" n[type] : type)); type = ""; id = "" }
			/^stages:/ { in_stages = 1; next }
			in_stages && /^[^ \t#-]/ { flush(); in_stages = 0 }
			in_stages && /^[ \t]*- *[A-Za-z_]+:/ {
				flush(); line = $0; sub(/^[ \t]*- */, "", line)
				type = line; sub(/:.*/, "", type)
				if (match(line, /[{,] *id: *[^,} ]+/)) { id = substr(line, RSTART, RLENGTH); sub(/.*id: */, "", id) }
				next
			}
			in_stages && id == "" && /^[ \t]+id: *[^ ]/ { id = $0; sub(/^[ \t]+id: */, "", id); sub(/[ \t#].*/, "", id) }
			END { flush() }' "$recipe")
	fi
	echo "$ids"
}

_amiforge()
{
	local cur prev words cword
	_init_completion || return

	# The command (skipping global options) and, for ami and aws, its subcommand.
	local i cmd="" cmdi=0 sub="" recipe=""
	for ((i = 1; i < cword; i++)); do
		if [[ -z $cmd ]]; then
			[[ ${words[i]} == -* ]] && continue
			cmd=${words[i]} cmdi=$i
		elif [[ ($cmd == ami || $cmd == aws) && -z $sub && ${words[i]} != -* ]]; then
			sub=${words[i]}
		elif [[ -z $recipe && ${words[i]} == *.y?(a)ml ]]; then
			recipe=${words[i]}
		fi
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-v -q --verbose --quiet --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_amiforge_commands" -- "$cur"))
		fi
		return
	fi

	# Option arguments.
	case $prev in
	--from)
		[[ -n $recipe ]] && COMPREPLY=($(compgen -W "$(_amiforge_stage_ids "${words[0]}" "$recipe")" -- "$cur"))
		return ;;
	--state | --cache | --parts)
		_filedir -d
		return ;;
	--key | --cert | -o | --outputs-env)
		_filedir
		return ;;
	--accel)
		COMPREPLY=($(compgen -W "tcg kvm" -- "$cur"))
		return ;;
	--imds)
		COMPREPLY=($(compgen -W "optional required v1-only" -- "$cur"))
		return ;;
	--set | --remote | --remote-wait | --region | --profile | --unused-for | --user | --timeout | --memory | \
		--service | --date | --header | -H | --data | -d | --name | --tag | --expire-after | --expires | \
		--copy-to | --wait | --to | --source-region | --kms-key | --kernel-id | --source-profile | \
		--dest-account | --account | --org | --ou | --in | --at | --keep-newest | --older-than)
		return ;;
	esac

	case $cmd in
	ami)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "$_amiforge_ami_subs --help" -- "$cur"))
			return
		fi
		COMPREPLY=($(compgen -W "$(_amiforge_options "ami $sub")" -- "$cur"))
		return ;;
	aws)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "request --help" -- "$cur"))
			return
		fi ;;
	esac

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_amiforge_options "$cmd")" -- "$cur"))
		return
	fi
	case $cmd in
	build | plan | validate | status | clean | iam-policy)
		_filedir '@(yaml|yml)' ;;
	boot-test)
		_filedir '@(img|raw|qcow2)' ;;
	unbundle)
		_filedir xml ;;
	esac
}
complete -F _amiforge amiforge
