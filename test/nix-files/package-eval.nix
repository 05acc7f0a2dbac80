# Evaluates nix/package.nix with stand-ins for the nixpkgs functions it calls
# (no nixpkgs here) and returns what it hands to buildNpmPackage about its
# dependencies and Node.
let
  importNpmLock = {
    __functor = _: { npmRoot, ... }: {
      from = "importNpmLock";
      lockFileFound = builtins.pathExists (npmRoot + "/package-lock.json");
    };
    npmConfigHook = "importNpmLock.npmConfigHook";
  };
  attrs = import ../../nix/package.nix {
    lib = { cleanSource = p: p; makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps); platforms.unix = [ ]; };
    buildNpmPackage = a: a;
    inherit importNpmLock;
    nodejs_24 = "nodejs_24";
    makeWrapper = "makeWrapper";
    nix = "/nix/store/00000000000000000000000000000000-nix";
  };
in
{
  hasNpmDepsHash = attrs ? npmDepsHash;
  inherit (attrs) npmDeps npmConfigHook nodejs npmBuildScript;
}
