# Evaluates nix/module.nix against a small stub of the NixOS option system
# (no nixpkgs here): option defaults are filled in, the settings given are laid
# over them, and mkIf/mkMerge are resolved. Prints the resulting config.
{ settings }:
let
  inherit (builtins) attrNames concatMap concatStringsSep elemAt filter foldl' isAttrs isList length listToAttrs map mapAttrs replaceStrings split toString;
  lib = rec {
    mkOption = o: o // { _type = "option"; };
    mkEnableOption = name: mkOption { default = false; description = "Whether to enable ${name}."; };
    mkIf = cond: content: { _type = "if"; inherit cond content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    optionals = c: l: if c then l else [ ];
    optionalString = c: s: if c then s else "";
    getExe = p: "${p}/bin/nixipfs";
    concatMap = builtins.concatMap;
    escapeShellArg = a: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString a)}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    splitString = sep: s: filter builtins.isString (split sep s);
    last = l: elemAt l (length l - 1);
    toInt = s: builtins.fromJSON s;
    types = {
      package = "package"; port = "port"; bool = "bool"; str = "str"; path = "path";
      listOf = t: "listOf ${t}"; nullOr = t: "nullOr ${t}"; ints.positive = "positive";
    };
  };
  pkgs = {
    nixipfs = "/nix/store/00000000000000000000000000000000-nixipfs";
    stdenv.hostPlatform.system = "x86_64-linux";
    util-linux = "/nix/store/11111111111111111111111111111111-util-linux";
    writeShellScript = name: text: { inherit name text; };
  };
  isOption = v: isAttrs v && (v._type or "") == "option";
  defaultsOf = opts: mapAttrs (_: v: if isOption v then v.default else defaultsOf v) opts;
  overlay = base: over: base // mapAttrs (k: v: if isAttrs v && isAttrs (base.${k} or null) && !(isOption v) then overlay base.${k} v else v) over;
  # Resolves mkIf/mkMerge; merges attrsets deeply and concatenates lists.
  merge = a: b: a // mapAttrs (k: v: if isAttrs v && isAttrs (a.${k} or null) then merge a.${k} v else if isList v && isList (a.${k} or null) then a.${k} ++ v else v) b;
  resolve = v:
    if isAttrs v && (v._type or "") == "if" then (if v.cond then resolve v.content else { })
    else if isAttrs v && (v._type or "") == "merge" then foldl' merge { } (map resolve v.contents)
    else if isAttrs v && !(v ? _type) then mapAttrs (_: resolve) v
    else v;
  module = import ../../nix/module.nix { self = null; };
  declared = (module { config = { }; inherit lib pkgs; }).options;
  config = { services.nixipfs = overlay (defaultsOf declared.services.nixipfs) settings; };
in
resolve (module { inherit config lib pkgs; }).config
