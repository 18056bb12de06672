/**
 * Platform names. The contract form is Node's own `${process.platform}-${process.arch}`
 * ("linux-x64"); the seed's legacy `min_platform` uses uname-style names ("linux-x86_64"),
 * which are mapped onto Node's before comparing.
 */

/** The host this process runs on, in the contract form. */
export function hostPlatform(): string {
  return `${process.platform}-${process.arch}`;
}

const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: 'x64',
  amd64: 'x64',
  aarch64: 'arm64',
  i386: 'ia32',
  i686: 'ia32',
  x86: 'ia32',
};

const OS_ALIASES: Readonly<Record<string, string>> = {
  windows: 'win32',
  macos: 'darwin',
  osx: 'darwin',
};

export interface PlatformParts {
  os: string;
  /** Absent when the name gives an OS only ("linux"). */
  arch: string | undefined;
}

/**
 * Splits a platform name at its first "-" (Node's platform names contain none) and maps
 * uname-style spellings to Node's: x86_64/amd64 → x64, aarch64 → arm64, i386/i686 → ia32,
 * windows → win32, macos/osx → darwin. Case-insensitive.
 */
export function normalizePlatform(name: string): PlatformParts {
  const lower = name.trim().toLowerCase();
  const dash = lower.indexOf('-');
  const os = dash === -1 ? lower : lower.slice(0, dash);
  const arch = dash === -1 ? undefined : lower.slice(dash + 1);
  return {
    os: Object.hasOwn(OS_ALIASES, os) ? OS_ALIASES[os]! : os,
    arch: arch === undefined || arch === '' ? undefined : Object.hasOwn(ARCH_ALIASES, arch) ? ARCH_ALIASES[arch]! : arch,
  };
}
