#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Stops and removes the TillbridgeAgent service and its program files.

.DESCRIPTION
    The data folder (%ProgramData%\Tillbridge: outbox, archive, quarantine, logs, config
    and password) stays: records not yet acknowledged by central are in its outbox, and
    an agent installed again sends them. Delete it by hand only once `tillbridge-agent
    status` showed no backlog.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'Tillbridge'),
    [string]$DataDir = (Join-Path $env:ProgramData 'Tillbridge')
)

$ErrorActionPreference = 'Stop'
$host_ = Join-Path $InstallDir 'tillbridge-agent-service.exe'
if (Test-Path $host_) {
    & $host_ uninstall   # stops the service, waits for it, removes it
    if ($LASTEXITCODE -ne 0) { throw "uninstall failed with exit code $LASTEXITCODE" }
    Remove-Item -Recurse -Force $InstallDir
} else {
    Write-Host "$host_ not found; nothing to remove."
}
Write-Host "Data left in place: $DataDir"
