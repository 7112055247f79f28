"""Running on a cluster: throwaway local servers for the demo and tests, and the demo itself."""
