{ lib, buildNpmPackage, importNpmLock, nodejs_24, makeWrapper, nix }:

buildNpmPackage {
  pname = "nixipfs";
  version = "0.1.0";
  src = lib.cleanSource ../.;
  nodejs = nodejs_24;

  # The dependencies come straight from package-lock.json (each entry has its
  # own integrity hash), so there is no npmDepsHash to keep in step with it.
  npmDeps = importNpmLock { npmRoot = ../.; };
  npmConfigHook = importNpmLock.npmConfigHook;

  npmBuildScript = "build";
  nativeBuildInputs = [ makeWrapper ];

  # The tests need a writable Nix store and loopback servers: run `npm test` in the dev shell.
  doCheck = false;

  postInstall = ''
    # publish and import call the `nix` CLI. No heap cap: bin/nixipfs.mjs sizes the heap's growth itself.
    wrapProgram $out/bin/nixipfs \
      --prefix PATH : ${lib.makeBinPath [ nix ]}
  '';

  meta = {
    description = "Publish Nix build outputs to IPFS and serve them back to Nix as a binary cache";
    mainProgram = "nixipfs";
    platforms = lib.platforms.unix;
  };
}
