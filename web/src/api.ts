// The exchange's services over gRPC-Web through the edge (same origin), with the caller's API key
// on every call. The clients come from the descriptors that protoc-gen-es generated from proto/.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccountService } from "./gen/exchange/v1/accounts_pb";
import { CompetitionService } from "./gen/exchange/v1/competition_pb";
import { BookService, TradeService } from "./gen/exchange/v1/market_pb";
import { OrderService } from "./gen/exchange/v1/orders_pb";
import { StreamService } from "./gen/exchange/v1/streams_pb";

export interface Api {
  orders: Client<typeof OrderService>;
  book: Client<typeof BookService>;
  trades: Client<typeof TradeService>;
  accounts: Client<typeof AccountService>;
  competition: Client<typeof CompetitionService>;
  streams: Client<typeof StreamService>;
}

export function connect(apiKey: string, baseUrl = location.origin): Api {
  const withKey: Interceptor = (next) => (request) => {
    request.header.set("x-api-key", apiKey);
    return next(request);
  };
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [withKey] });
  return {
    orders: createClient(OrderService, transport),
    book: createClient(BookService, transport),
    trades: createClient(TradeService, transport),
    accounts: createClient(AccountService, transport),
    competition: createClient(CompetitionService, transport),
    streams: createClient(StreamService, transport),
  };
}

/** The message a participant should read: the exchange's own text, without the code prefix. */
export function errorText(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage || Code[error.code];
  return error instanceof Error ? error.message : String(error);
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}
