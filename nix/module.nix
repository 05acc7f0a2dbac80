# NixOS module: `services.nixipfs` runs a gateway (a substituter for this
# machine), optionally a mirror, and publishes every local build through a
# post-build hook. Imported by the flake as nixosModules.default.
{ self ? null }:
{ config, lib, pkgs, ... }:

let
  cfg = config.services.nixipfs;
  inherit (lib) mkEnableOption mkIf mkMerge mkOption optionals types;
  exe = lib.getExe cfg.package;
  repeated = flag: values: lib.concatMap (v: [ flag v ]) values;
  # A fixed user, not DynamicUser: the post-build hook (run by the Nix daemon as root) publishes into the same repo as it.
  hardening = {
    User = "nixipfs";
    Group = "nixipfs";
    StateDirectory = "nixipfs";
    StateDirectoryMode = "0700";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectControlGroups = true;
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
    RestrictNamespaces = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = false; # V8's JIT writes code
    SystemCallArchitectures = "native";
    Restart = "on-failure";
    # Room for --max-connections (8192 by default) besides pack files and peers: under systemd's
    # default soft limit (1024) the gateway would serve at most 768 HTTP connections.
    LimitNOFILE = 65536;
  };
  # Nothing listens beyond loopback unless the firewall is opened for it.
  bindHost = if cfg.openFirewall then "0.0.0.0" else "127.0.0.1";
  mirrorListen = if cfg.mirror.listen != null then cfg.mirror.listen else "${bindHost}:8081";
  nodeArgs = repo: listen: [
    "--repo" repo
    "--listen" listen
    "--listen-p2p" "/ip4/${bindHost}/tcp/${toString cfg.p2pPort}"
  ] ++ repeated "--peer" cfg.peers ++ repeated "--http-gateway" cfg.httpGateways;
  # A hardened, networked service running `nixipfs COMMAND ARGS…`.
  nodeService = description: command: args: extra: {
    inherit description;
    wantedBy = [ "multi-user.target" ];
    after = [ "network-online.target" ];
    wants = [ "network-online.target" ];
    serviceConfig = hardening // extra // { ExecStart = lib.escapeShellArgs ([ exe command ] ++ args); };
  };
in
{
  options.services.nixipfs = {
    enable = mkEnableOption "nixipfs, Nix binary caching over IPFS";

    package = mkOption {
      type = types.package;
      default = if self != null then self.packages.${pkgs.stdenv.hostPlatform.system}.default else pkgs.nixipfs;
      description = "The nixipfs package.";
    };

    p2pPort = mkOption { type = types.port; default = 4001; description = "libp2p TCP port (bitswap, record exchange)."; };
    openFirewall = mkOption { type = types.bool; default = false; description = "Listen for libp2p (and a mirror's HTTP, unless mirror.listen is set) on all interfaces and open those ports in the firewall; otherwise they listen on loopback only."; };
    peers = mkOption { type = types.listOf types.str; default = [ ]; description = "libp2p peers to keep connected (multiaddrs ending in /p2p/<id>)."; };
    httpGateways = mkOption { type = types.listOf types.str; default = [ ]; description = "Trustless HTTP gateways (other nixipfs nodes) to fetch from."; };

    gateway = {
      enable = mkOption { type = types.bool; default = true; description = "Run the gateway and use it as a substituter."; };
      listen = mkOption { type = types.str; default = "127.0.0.1:8080"; description = "HTTP address of the substituter."; };
      follow = mkOption { type = types.listOf types.str; default = [ ]; description = "Caches to follow (Nix public keys or IPNS names)."; };
      trust = mkOption { type = types.listOf types.str; default = [ ]; description = "Builder keys of the trust policy (empty: no quorum)."; };
      threshold = mkOption { type = types.ints.positive; default = 1; description = "How many trusted keys must agree on a path."; };
      upstream = mkOption { type = types.listOf types.str; default = [ ]; description = "HTTP binary caches to fall back to (write-through)."; };
      upstreamKeys = mkOption { type = types.listOf types.str; default = [ ]; description = "Keys upstream narinfos must be signed by."; };
      maxCache = mkOption { type = types.nullOr types.str; default = null; example = "20G"; description = "Bound on fetched NARs of followed caches."; };
      extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "More arguments for nixipfs gateway."; };
    };

    mirror = {
      enable = mkEnableOption "a mirror that pins followed caches";
      listen = mkOption { type = types.nullOr types.str; default = null; example = "0.0.0.0:8081"; description = "HTTP address peers fetch from (default: port 8081, on all interfaces with openFirewall, else loopback)."; };
      follow = mkOption { type = types.listOf types.str; default = [ ]; description = "Caches to mirror."; };
      closures = mkOption { type = types.listOf types.str; default = [ ]; description = "Only these closures (empty: everything)."; };
    };

    publishHook = {
      enable = mkEnableOption "publishing every local build (a Nix post-build-hook)";
      secretKeyFile = mkOption { type = types.nullOr types.path; default = null; description = "Nix secret key that signs what is published (default: the repo's own, created on first use)."; };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    (mkIf cfg.gateway.enable {
      systemd.services.nixipfs-gateway = nodeService "nixipfs gateway (Nix substituter over IPFS)" "gateway"
        (nodeArgs "/var/lib/nixipfs" cfg.gateway.listen
          ++ repeated "--follow" cfg.gateway.follow
          ++ repeated "--trust" cfg.gateway.trust
          ++ optionals (cfg.gateway.trust != [ ]) [ "--threshold" (toString cfg.gateway.threshold) ]
          ++ repeated "--upstream" cfg.gateway.upstream
          ++ repeated "--upstream-key" cfg.gateway.upstreamKeys
          ++ optionals (cfg.gateway.maxCache != null) [ "--max-cache" cfg.gateway.maxCache ]
          ++ cfg.gateway.extraArgs)
        { };
      nix.settings.substituters = [ "http://${cfg.gateway.listen}" ];
      nix.settings.trusted-public-keys = cfg.gateway.trust;
    })

    (mkIf cfg.mirror.enable {
      systemd.services.nixipfs-mirror = nodeService "nixipfs mirror (pins followed caches)" "mirror"
        (nodeArgs "/var/lib/nixipfs-mirror" mirrorListen
          ++ repeated "--follow" cfg.mirror.follow
          ++ repeated "--closure" cfg.mirror.closures)
        { StateDirectory = "nixipfs-mirror"; };
    })

    (mkIf cfg.publishHook.enable {
      nix.settings.post-build-hook = pkgs.writeShellScript "nixipfs-post-build-hook" ''
        export NIXIPFS_REPO=/var/lib/nixipfs
        exec ${pkgs.util-linux}/bin/runuser -u nixipfs -- ${exe} publish --hook ${lib.optionalString (cfg.publishHook.secretKeyFile != null) "--secret-key-file ${cfg.publishHook.secretKeyFile}"}
      '';
    })

    {
      users.users.nixipfs = { isSystemUser = true; group = "nixipfs"; home = "/var/lib/nixipfs"; };
      users.groups.nixipfs = { };
      networking.firewall.allowedTCPPorts = optionals cfg.openFirewall ([ cfg.p2pPort ] ++ optionals cfg.mirror.enable [ (lib.toInt (lib.last (lib.splitString ":" mirrorListen))) ]);
    }
  ]);
}
