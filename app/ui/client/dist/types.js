/** Types shared by the client, the connection, the panel and the React wrapper. */
export {};
