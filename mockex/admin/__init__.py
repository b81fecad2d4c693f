"""The organizer's command line, `python -m mockex.admin` (docs/organizer.md): AdminService
calls over gRPC, teams files and keys files, and the export of the results."""
