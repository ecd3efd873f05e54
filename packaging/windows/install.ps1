#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs or upgrades the Tillbridge store agent as the TillbridgeAgent service.

.DESCRIPTION
    Creates %ProgramData%\Tillbridge readable only by SYSTEM, Administrators and the
    service, copies the agent into Program Files, registers the service (delayed
    automatic start, restart on any failure, the virtual account
    NT SERVICE\TillbridgeAgent), gives that account access to the POS export folders,
    runs the self-test and starts the service. Run again with a newer build to upgrade:
    the service is stopped, the files replaced, its settings applied again, and started.

    The script is plain PowerShell with no downloaded or generated code, so it can be
    signed as it is (Set-AuthenticodeSignature) for machines that only run signed
    scripts.

.EXAMPLE
    .\install.ps1 -Source .\tillbridge-agent -Config .\agent.toml `
        -PasswordFile .\mqtt_password -ExportFolder C:\xstore\poslog-out
#>
[CmdletBinding()]
param(
    # The built folder (dist\tillbridge-agent) holding tillbridge-agent.exe.
    [Parameter(Mandatory = $true)][string]$Source,
    # The agent's config; copied to the data folder unless one is there already.
    [string]$Config,
    # The broker password file written by `tillbridge-central provision-store`.
    [string]$PasswordFile,
    # POS export folders the service must read and move files out of.
    [string[]]$ExportFolder = @(),
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'Tillbridge'),
    [string]$DataDir = (Join-Path $env:ProgramData 'Tillbridge')
)

$ErrorActionPreference = 'Stop'
$ServiceName = 'TillbridgeAgent'
$ServiceAccount = "NT SERVICE\$ServiceName"
$System = '*S-1-5-18'          # well-known SIDs: the same on every language of Windows
$Administrators = '*S-1-5-32-544'

function Invoke-Checked([string]$File, [string[]]$Arguments) {
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Protect-Path([string]$Path, [string]$Grant) {
    # No inherited entries: only SYSTEM, Administrators and the service may read it.
    Invoke-Checked icacls.exe @($Path, '/inheritance:r', '/grant:r', "${System}:$Grant", "${Administrators}:$Grant")
}

$agentExe = Join-Path $Source 'tillbridge-agent.exe'
$serviceExe = Join-Path $Source 'tillbridge-agent-service.exe'
foreach ($file in @($agentExe, $serviceExe)) {
    if (-not (Test-Path $file)) { throw "$file not found: -Source must be the built dist\tillbridge-agent folder" }
}

# 1. The data folder, protected before anything is written into it.
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
Protect-Path $DataDir '(OI)(CI)F'
$configPath = Join-Path $DataDir 'agent.toml'
if ($Config -and -not (Test-Path $configPath)) { Copy-Item $Config $configPath }
if ($PasswordFile) {
    $target = Join-Path $DataDir 'mqtt_password'
    Copy-Item $PasswordFile $target -Force
    Protect-Path $target 'F'
}
if (-not (Test-Path $configPath)) { throw "$configPath is missing: pass -Config" }

# 2. An upgrade stops the running service before its files are replaced.
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') {
    Write-Host "Stopping $ServiceName for the upgrade."
    Stop-Service -Name $ServiceName
    (Get-Service -Name $ServiceName).WaitForStatus('Stopped', [TimeSpan]::FromSeconds(90))
}

# 3. The program files.
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Copy-Item -Path (Join-Path $Source '*') -Destination $InstallDir -Recurse -Force
$agent = Join-Path $InstallDir 'tillbridge-agent.exe'
$host_ = Join-Path $InstallDir 'tillbridge-agent-service.exe'

# 4. The config must be valid before the service is started with it.
Invoke-Checked $agent @('config', 'check', '--config', $configPath)

# 5. Register (or update) the service: delayed automatic start, recovery on any failure,
#    the service SID and the virtual account, preshutdown time.
if ($existing) { Invoke-Checked $host_ @('update') } else { Invoke-Checked $host_ @('install') }

# 6. The service account: full control of its data, modify on the export folders.
Invoke-Checked icacls.exe @($DataDir, '/grant', "${ServiceAccount}:(OI)(CI)F", '/T')
foreach ($folder in $ExportFolder) {
    if ($folder -match '^[A-Za-z]:' -and (Get-PSDrive -Name $folder.Substring(0, 1) -ErrorAction SilentlyContinue).DisplayRoot) {
        throw "$folder is on a mapped drive, which the service does not see: use its UNC path"
    }
    Invoke-Checked icacls.exe @($folder, '/grant', "${ServiceAccount}:(OI)(CI)M")
}

# 7. Prove the installation, start, and show the status.
Invoke-Checked $agent @('self-test', '--config', $configPath)
Start-Service -Name $ServiceName
Start-Sleep -Seconds 5
& $agent status --config $configPath
& $agent doctor --config $configPath
Write-Host "Installed $ServiceName from $InstallDir; data, logs and outbox in $DataDir."
