//! Scenario files: TOML parsing with file:line:column errors, expansion into a world and its applications, and expectations.
